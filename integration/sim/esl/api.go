package esl

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/callctl/callctl/integration/sim/callmodel"
)

func apiFrame(body string) []byte {
	if body == "" {
		body = "-ERR no reply\n"
	}
	return []byte("Content-Type: api/response\nContent-Length: " + strconv.Itoa(len(body)) + "\n\n" + body)
}

// cmdAPI runs an api command synchronously: events raised meanwhile are
// held and follow the response, as on the real event socket.
func (c *conn) cmdAPI(line string) {
	c.mu.Lock()
	c.hold++
	c.mu.Unlock()
	result := make(chan string, 1)
	c.s.runAPI(line, func(_ *callmodel.Tx, out string) { result <- out })
	var out string
	select {
	case out = <-result:
	case <-c.s.ctx.Done():
		out = "-ERR shutting down\n"
	case <-c.gone:
		out = "-ERR connection dropped\n"
	}
	c.mu.Lock()
	c.hold--
	if !c.dead && !c.closing {
		c.queue = append(c.queue, outItem{raw: apiFrame(out)})
		if c.hold == 0 {
			c.queue = append(c.queue, c.held...)
			c.held = nil
		}
		c.signal()
	}
	c.mu.Unlock()
}

// cmdBgapi answers at once with the Job-UUID; the result comes as a
// BACKGROUND_JOB event.
func (c *conn) cmdBgapi(line, jobUUID string) {
	if jobUUID == "" {
		jobUUID = c.s.fleet.NewUUID()
	}
	cmd, arg, _ := strings.Cut(line, " ")
	c.sendRaw([]byte("Content-Type: command/reply\nReply-Text: +OK Job-UUID: " + jobUUID + "\nJob-UUID: " + jobUUID + "\n\n"))
	c.s.runAPI(line, func(tx *callmodel.Tx, out string) {
		if tx == nil {
			return
		}
		h := []header{{"Job-UUID", jobUUID}, {"Job-Command", cmd}}
		if arg != "" {
			h = append(h, header{"Job-Command-Arg", arg})
		}
		c.s.emitServer(tx, "BACKGROUND_JOB", h, out, true)
	})
}

// runAPI executes an api command; done receives the output inside a model
// transaction (at once for most commands, on answer or failure for
// originate).
func (s *Server) runAPI(line string, done func(tx *callmodel.Tx, out string)) {
	cmd, arg, _ := strings.Cut(strings.TrimSpace(line), " ")
	arg = strings.TrimSpace(arg)
	if strings.EqualFold(cmd, "originate") {
		err := s.model.Do(func(tx *callmodel.Tx) error {
			s.apiOriginate(tx, arg, done)
			return nil
		})
		if err != nil {
			done(nil, "-ERR "+err.Error()+"\n")
		}
		return
	}
	var out string
	err := s.model.Do(func(tx *callmodel.Tx) error {
		out = s.apiSync(tx, strings.ToLower(cmd), cmd, arg)
		done(tx, out)
		return nil
	})
	if err != nil {
		done(nil, "-ERR "+err.Error()+"\n")
	}
}

func (s *Server) apiSync(tx *callmodel.Tx, lcmd, cmd, arg string) string {
	args := strings.Fields(arg)
	switch lcmd {
	case "uuid_kill":
		if len(args) == 0 {
			return "-USAGE: <uuid> [cause]\n"
		}
		cause := callmodel.CauseNormalClearing
		if len(args) > 1 {
			cause = causeOf(args[1])
		}
		if !tx.Hangup(args[0], cause, callmodel.ByRequest) {
			return "-ERR No such channel!\n"
		}
		return "+OK\n"
	case "uuid_exists":
		if len(args) > 0 && tx.Exists(args[0]) {
			return "true"
		}
		return "false"
	case "uuid_getvar":
		if len(args) < 2 {
			return "-USAGE: <uuid> <var>\n"
		}
		if !tx.Exists(args[0]) {
			return "-ERR No such channel!\n"
		}
		if v, ok := tx.Var(args[0], args[1]); ok {
			return v
		}
		return "_undef_"
	case "uuid_setvar":
		if len(args) < 1 {
			return "-USAGE: <uuid> <var> [value]\n"
		}
		if !tx.Exists(args[0]) {
			return "-ERR No such channel!\n"
		}
		if len(args) < 2 {
			return "-ERR No variable specified\n"
		}
		_, rest, _ := strings.Cut(arg, " ")
		name, value, _ := strings.Cut(strings.TrimSpace(rest), " ")
		if value == "" || value == "undef" {
			_ = tx.UnsetVar(args[0], name)
		} else {
			_ = tx.SetVar(args[0], name, value)
		}
		return "+OK\n"
	case "uuid_setvar_multi":
		if len(args) < 2 {
			return "-USAGE: <uuid> <var>=<value>;<var>=<value>...\n"
		}
		if !tx.Exists(args[0]) {
			return "-ERR No such channel!\n"
		}
		_, rest, _ := strings.Cut(arg, " ")
		for _, kv := range strings.Split(rest, ";") {
			n, v := splitVar(kv)
			if n == "" {
				continue
			}
			if v == "" {
				_ = tx.UnsetVar(args[0], n)
			} else {
				_ = tx.SetVar(args[0], n, v)
			}
		}
		return "+OK\n"
	case "uuid_answer":
		if len(args) == 0 || !tx.Exists(args[0]) {
			return "-ERR No such channel!\n"
		}
		_ = tx.Answer(args[0])
		return "+OK\n"
	case "uuid_bridge":
		if len(args) < 2 {
			return "-USAGE: <uuid> <other_uuid>\n"
		}
		if !tx.Exists(args[0]) || !tx.Exists(args[1]) {
			return "-ERR Invalid uuid\n"
		}
		for _, u := range args[:2] {
			if snap, _ := tx.Snapshot(u); snap.State != callmodel.StateUp {
				_ = tx.Answer(u)
			}
		}
		if err := tx.Bridge(args[0], args[1]); err != nil {
			return "-ERR Invalid uuid\n"
		}
		return "+OK " + args[1] + "\n"
	case "uuid_transfer":
		if len(args) < 2 || len(args) > 5 {
			return "-USAGE: <uuid> [-bleg|-both] <dest-exten> [<dialplan>] [<context>]\n"
		}
		uuid := args[0]
		rest := args[1:]
		if strings.HasPrefix(rest[0], "-") {
			mode := strings.ToLower(rest[0])
			rest = rest[1:]
			if len(rest) == 0 {
				return "-USAGE: <uuid> [-bleg|-both] <dest-exten> [<dialplan>] [<context>]\n"
			}
			if snap, ok := tx.Snapshot(uuid); ok && snap.BridgedTo != "" {
				switch mode {
				case "-bleg":
					uuid = snap.BridgedTo
				case "-both":
					_ = s.transfer(tx, snap.BridgedTo, rest[0], at(rest, 1), at(rest, 2), nil)
				}
			}
		}
		if !tx.Exists(uuid) {
			return "-ERR No such channel!\n"
		}
		if err := s.transfer(tx, uuid, rest[0], at(rest, 1), at(rest, 2), nil); err != nil {
			return "-ERR\n"
		}
		return "+OK\n"
	case "sofia_contact":
		if len(args) == 0 {
			return "-ERR Usage: [profile/]<user>@<domain>\n"
		}
		user := args[0]
		if i := strings.LastIndexByte(user, '/'); i >= 0 {
			user = user[i+1:]
		}
		user, _, _ = strings.Cut(user, "@")
		user = strings.TrimPrefix(user, "*")
		if !s.fleet.PhoneRegistered(s.model.Name(), user) {
			return "error/user_not_registered"
		}
		ip := s.model.IP()
		if ip == "" {
			ip = "127.0.0.1"
		}
		return "sofia/internal/sip:" + user + "@" + ip + ":5060"
	case "show":
		return s.apiShow(tx, arg)
	case "status":
		return s.apiStatus(tx)
	case "hupall":
		cause := callmodel.CauseNormalClearing
		if len(args) > 0 {
			cause = causeOf(args[0])
		}
		for _, ch := range tx.Channels() {
			if len(args) >= 3 {
				if v, _ := ch.Vars.Get(args[1]); v != args[2] {
					continue
				}
			}
			tx.Hangup(ch.UUID, cause, callmodel.ByRequest)
		}
		return "+OK hangup all channels with cause " + cause.Name + "\n"
	case "version":
		return "FreeSWITCH Version 1.10.12-release~64bit (-release 64bit)\n"
	case "reloadxml":
		return "+OK [Success]\n"
	case "uuid_broadcast":
		// uuid_broadcast <uuid> <app>::<args> [aleg|bleg|both]: only
		// att_xfer runs; other applications are accepted and do nothing.
		if len(args) < 2 || !tx.Exists(args[0]) {
			return "-ERR No such channel!\n"
		}
		if app, data, ok := strings.Cut(args[1], "::"); ok && app == "att_xfer" {
			target := args[0]
			if at(args, 2) == "bleg" {
				snap, _ := tx.Snapshot(target)
				target = snap.BridgedTo
			}
			if target != "" {
				s.attXfer(tx, target, data)
			}
		}
		return "+OK Message sent\n"
	case "uuid_recv_dtmf":
		if len(args) < 2 || !tx.Exists(args[0]) {
			return "-ERR no such session\n"
		}
		s.attXferDTMF(tx, args[0], args[1])
		return "+OK " + args[0] + " received DTMF " + args[1] + ".\n"
	case "uuid_break", "uuid_hold", "uuid_record", "uuid_displace":
		if len(args) == 0 || !tx.Exists(args[len(args)-1]) && !tx.Exists(args[0]) {
			return "-ERR No such channel!\n"
		}
		return "+OK Success\n"
	case "hostname":
		return s.cfg.Hostname
	case "global_getvar":
		return ""
	}
	return "-ERR " + cmd + " Command not found!\n"
}

func at(list []string, i int) string {
	if i < len(list) {
		return list[i]
	}
	return ""
}

// apiOriginate: originate <dial string> <&app(args)|exten> [dialplan]
// [context] [cid name] [cid number] [timeout].
func (s *Server) apiOriginate(tx *callmodel.Tx, arg string, done func(*callmodel.Tx, string)) {
	args := splitArgs(arg)
	if len(args) < 2 {
		done(tx, "-USAGE: <call url> <exten>|&<application_name>(<app_args>) [<dialplan>] [<context>] [<cid_name>] [<cid_num>] [<timeout_sec>]\n")
		return
	}
	ds, err := parseDialString(args[0])
	if err != nil {
		done(tx, "-ERR INVALID_NUMBER_FORMAT\n")
		return
	}
	caller := callmodel.Party{Number: "0000000000"}
	if v := at(args, 4); v != "" && v != "undef" {
		caller.Name = v
	}
	if v := at(args, 5); v != "" && v != "undef" {
		caller.Number = v
	}
	if v := at(args, 6); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			ds.global = append(ds.global, header{"originate_timeout", v})
		}
	}
	target := args[1]
	dialplanName, context := at(args, 2), at(args, 3)
	o := &originate{ds: ds, defaultCaller: caller}
	o.onDone = func(tx *callmodel.Tx, winner string, cause callmodel.Cause) {
		if winner == "" {
			done(tx, "-ERR "+cause.Name+"\n")
			return
		}
		flipCID(tx, winner)
		done(tx, "+OK "+winner+"\n")
		fc := fsOf(tx, winner)
		if fc == nil || !tx.Exists(winner) {
			return
		}
		if strings.HasPrefix(target, "&") {
			app, data := parseInlineApp(target[1:])
			fc.dp = []action{{app, data}}
			fc.started = true
			fc.v.hit = true
			s.setState(tx, winner, csExecute)
			s.kick(tx, winner)
			return
		}
		_ = s.transfer(tx, winner, target, dialplanName, context, nil)
	}
	s.startOriginate(tx, o)
}

// parseInlineApp splits "park()" or "bridge(user/1000)".
func parseInlineApp(s string) (string, string) {
	name, rest, ok := strings.Cut(s, "(")
	if !ok {
		app, data, _ := strings.Cut(s, " ")
		return app, data
	}
	return name, strings.TrimSuffix(rest, ")")
}

func (s *Server) apiShow(tx *callmodel.Tx, arg string) string {
	f := strings.Fields(strings.ToLower(arg))
	if len(f) == 0 || (f[0] != "channels" && f[0] != "calls") {
		return "-USAGE: channels|calls [as json]\n"
	}
	asJSON := len(f) >= 3 && f[1] == "as" && f[2] == "json"
	cols := []string{"uuid", "direction", "created", "created_epoch", "name", "state", "cid_name", "cid_num",
		"ip_addr", "dest", "application", "application_data", "dialplan", "context", "read_codec",
		"read_rate", "read_bit_rate", "write_codec", "write_rate", "write_bit_rate", "secure", "hostname",
		"presence_id", "presence_data", "accountcode", "callstate", "callee_name", "callee_num",
		"callee_direction", "call_uuid", "sent_callee_name", "sent_callee_num", "initial_cid_name",
		"initial_cid_num", "initial_ip_addr", "initial_dest", "initial_dialplan", "initial_context"}
	var rows [][]string
	for _, ch := range tx.Channels() {
		if ch.State == callmodel.StateHangup {
			continue
		}
		fc := fsOf(tx, ch.UUID)
		var v view
		if fc != nil {
			v = fc.v
		}
		app := ch.Vars.Value("current_application")
		appData := ch.Vars.Value("current_application_data")
		dp := v.dialplan
		if dp == "" {
			dp = "XML"
		}
		calleeDir := ""
		if ch.BridgedTo != "" {
			calleeDir = "SEND"
		}
		rows = append(rows, []string{
			ch.UUID, ch.Direction.String(), ch.Created.Local().Format("2006-01-02 15:04:05"),
			strconv.FormatInt(ch.Created.Unix(), 10), ch.Name, csNames[v.cs], ch.Caller.Name, ch.Caller.Number,
			v.networkIP, ch.Destination, app, appData, dp, ch.Context, v.codec.name, v.codec.rate,
			v.codec.bitrate, v.codec.name, v.codec.rate, v.codec.bitrate, "", s.cfg.Hostname, "", "", "",
			v.callState, ch.Callee.Name, ch.Callee.Number, calleeDir, v.callUUID, "", "",
			v.origCaller.Name, v.origCaller.Number, v.networkIP, ch.Destination, dp, ch.Context,
		})
	}
	if asJSON {
		if len(rows) == 0 {
			return "{\"row_count\":0}\n"
		}
		var b strings.Builder
		b.WriteString("{\"row_count\":")
		b.WriteString(strconv.Itoa(len(rows)))
		b.WriteString(",\"rows\":[")
		for i, r := range rows {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteByte('{')
			for j, col := range cols {
				if j > 0 {
					b.WriteByte(',')
				}
				k, _ := json.Marshal(col)
				b.Write(k)
				b.WriteByte(':')
				b.Write(appendJSONString(nil, r[j]))
			}
			b.WriteByte('}')
		}
		b.WriteString("]}\n")
		return b.String()
	}
	var b strings.Builder
	b.WriteString(strings.Join(cols, ","))
	b.WriteByte('\n')
	for _, r := range rows {
		b.WriteString(strings.Join(r, ","))
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "\n%d total.\n", len(rows))
	return b.String()
}

func (s *Server) apiStatus(tx *callmodel.Tx) string {
	up := s.now().Sub(s.started)
	n := tx.ChannelCount()
	return fmt.Sprintf("UP 0 years, 0 days, %d hours, %d minutes, %d seconds, %d milliseconds, 0 microseconds\n"+
		"FreeSWITCH (Version 1.10.12-release 64bit) is ready\n"+
		"%d session(s) since startup\n"+
		"%d session(s) - peak %d, last 5min %d \n"+
		"0 session(s) per Sec out of max 1000, peak 0, last 5min 0 \n"+
		"100000 session(s) max\n"+
		"min idle cpu 0.00/99.00\n"+
		"Current Stack Size/Max 240K/8192K\n",
		int(up.Hours()), int(up.Minutes())%60, int(up.Seconds())%60, up.Milliseconds()%1000,
		s.sessionID, n, n, n)
}

// flipCID is switch_channel_flip_cid: an originated channel that answered
// swaps its caller and callee ids (it now presents what it reached).
func flipCID(tx *callmodel.Tx, uuid string) {
	snap, ok := tx.Snapshot(uuid)
	if !ok {
		return
	}
	if snap.Caller.Name != "" {
		_ = tx.SetVar(uuid, "pre_transfer_caller_id_name", snap.Caller.Name)
	}
	_ = tx.SetVar(uuid, "pre_transfer_caller_id_number", snap.Caller.Number)
	_ = tx.SetVar(uuid, "channel_cid_flipped", "yes")
	_ = tx.SetCaller(uuid, snap.Callee)
	_ = tx.SetCallee(uuid, snap.Caller)
}
