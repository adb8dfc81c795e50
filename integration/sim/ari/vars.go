package ari

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

var errFunction = errors.New("failed to execute function")

// splitFunction splits NAME(args) into NAME and args.
func splitFunction(s string) (name, args string, ok bool) {
	if !strings.HasSuffix(s, ")") {
		return "", "", false
	}
	i := strings.IndexByte(s, '(')
	if i <= 0 {
		return "", "", false
	}
	return strings.ToUpper(strings.TrimSpace(s[:i])), s[i+1 : len(s)-1], true
}

// setVariable is pbx_builtin_setvar_helper: dialplan functions are written
// (without a ChannelVarset event), plain variables set and reported when
// report is true.
func (e *engine) setVariable(c *channel, name, value string, report bool) error {
	if fn, args, ok := splitFunction(name); ok {
		return e.writeFunction(c, fn, args, value, report)
	}
	name = strings.TrimLeft(name, "_")
	if name == "" {
		return errFunction
	}
	if report {
		e.varset(c, name, value)
	} else {
		c.setVar(name, value)
	}
	return nil
}

func (e *engine) writeFunction(c *channel, fn, args, value string, report bool) error {
	switch fn {
	case "PJSIP_HEADER":
		action, hname, _ := strings.Cut(args, ",")
		hname = strings.TrimSpace(hname)
		if hname == "" {
			return errFunction
		}
		switch strings.ToLower(strings.TrimSpace(action)) {
		case "add":
			c.hdrOut = append(c.hdrOut, header{hname, value})
		case "update":
			for i := range c.hdrOut {
				if strings.EqualFold(c.hdrOut[i].name, hname) {
					c.hdrOut[i].value = value
					return nil
				}
			}
			return errFunction
		case "remove":
			kept := c.hdrOut[:0]
			for _, h := range c.hdrOut {
				if hname != "*" && !strings.EqualFold(h.name, hname) {
					kept = append(kept, h)
				}
			}
			c.hdrOut = kept
		default:
			return errFunction
		}
		return nil
	case "CALLERID":
		p := c.snap.Caller
		switch strings.ToLower(strings.TrimSpace(args)) {
		case "num", "number":
			p.Number = value
		case "name":
			p.Name = value
		case "all":
			p = parseCallerID(value)
		default:
			return errFunction
		}
		if report {
			e.setCaller(c, p, false)
		} else {
			c.snap.Caller = p
		}
		return nil
	case "CONNECTEDLINE":
		p := c.snap.Connected
		switch strings.ToLower(strings.TrimSpace(args)) {
		case "num", "number":
			p.Number = value
		case "name":
			p.Name = value
		case "all":
			p = parseCallerID(value)
		default:
			return errFunction
		}
		c.snap.Connected = p
		if report {
			e.emit(encChannelEvent(nil, "ChannelConnectedLine", e.now(), &c.snap), nil, c)
		}
		return nil
	case "PJSIP_TRANSFER_HANDLING":
		switch strings.ToLower(strings.TrimSpace(value)) {
		case "ari-only":
			c.ariOnlyTransfer = true
		case "core":
			c.ariOnlyTransfer = false
		default:
			return errFunction
		}
		return nil
	}
	return errFunction
}

// getVariable is GET /channels/{id}/variable: a function, a built-in
// variable or a channel variable.
func (e *engine) getVariable(c *channel, name string) (string, *apiError) {
	if fn, args, ok := splitFunction(name); ok {
		v, err := e.readFunction(c, fn, args)
		if err != nil {
			return "", errf(500, "Unable to read provided function")
		}
		return v, nil
	}
	if v, ok := c.vars[name]; ok {
		return v, nil
	}
	switch name {
	case "CHANNEL":
		return c.snap.Name, nil
	case "UNIQUEID":
		return c.snap.ID, nil
	case "CONTEXT":
		return c.snap.Dialplan.Context, nil
	case "EXTEN":
		return c.snap.Dialplan.Exten, nil
	case "PRIORITY":
		return strconv.Itoa(c.snap.Dialplan.Priority), nil
	case "LANGUAGE":
		return c.snap.Language, nil
	case "HANGUPCAUSE":
		return strconv.Itoa(c.cause), nil
	case "SYSTEMNAME":
		return e.cfg.SystemName, nil
	case "ENTITYID":
		return e.cfg.EntityID, nil
	case "EPOCH":
		return strconv.FormatInt(time.Now().Unix(), 10), nil
	}
	return "", errf(404, "Provided variable was not found")
}

func (e *engine) readFunction(c *channel, fn, args string) (string, error) {
	arg := strings.ToLower(strings.TrimSpace(args))
	switch fn {
	case "PJSIP_HEADER":
		action, hname, _ := strings.Cut(args, ",")
		if c.tech != techPJSIP || !strings.EqualFold(strings.TrimSpace(action), "read") {
			return "", errFunction
		}
		hname = strings.TrimSpace(hname)
		for k, v := range c.hdrIn {
			if strings.EqualFold(k, hname) {
				return v, nil
			}
		}
		return "", errFunction
	case "CALLERID":
		switch arg {
		case "num", "number":
			return c.snap.Caller.Number, nil
		case "name":
			return c.snap.Caller.Name, nil
		case "all":
			if c.snap.Caller.Name == "" {
				return c.snap.Caller.Number, nil
			}
			return `"` + c.snap.Caller.Name + `" <` + c.snap.Caller.Number + `>`, nil
		}
	case "CONNECTEDLINE":
		switch arg {
		case "num", "number":
			return c.snap.Connected.Number, nil
		case "name":
			return c.snap.Connected.Name, nil
		}
	case "CHANNEL":
		switch arg {
		case "name":
			return c.snap.Name, nil
		case "uniqueid":
			return c.snap.ID, nil
		case "state":
			return c.snap.State, nil
		case "language":
			return c.snap.Language, nil
		case "channeltype":
			if c.tech == techLocal {
				return "Local", nil
			}
			return "PJSIP", nil
		case "pjsip,call-id":
			return c.snap.ProtocolID, nil
		}
	case "PJSIP_TRANSFER_HANDLING":
		if c.ariOnlyTransfer {
			return "ari-only", nil
		}
		return "core", nil
	}
	return "", errFunction
}
