package callmodel

// remoteParty is the far end of a phone or PSTN leg: it plays a Behaviour.
type remoteParty struct {
	beh  Behaviour
	ring *Ring
}

// callerPlan is the far end of a simulated caller.
type callerPlan struct {
	plan   CallerPlan
	giveUp func()
}

func varsMap(vs []Var) map[string]string {
	if len(vs) == 0 {
		return nil
	}
	m := make(map[string]string, len(vs))
	for _, v := range vs {
		m[v.Name] = v.Value
	}
	return m
}

func (tx *Tx) dialRemote(spec ChannelSpec, ep Endpoint, b Behaviour) (string, error) {
	if spec.Direction == 0 {
		spec.Direction = Outbound
	}
	ch, err := tx.create(spec, OriginDial)
	if err != nil {
		return "", err
	}
	uuid := ch.snap.UUID
	ch.snap.Endpoint = ep
	ring := &Ring{
		Server:  tx.s.name,
		Target:  ep.Target,
		PSTN:    ep.Kind == EndpointPSTN,
		UUID:    uuid,
		Start:   ch.snap.Created,
		Outcome: OutcomeRinging,
		Caller:  spec.Caller,
		Vars:    varsMap(spec.Vars),
		Headers: varsMap(spec.Headers),
	}
	tx.s.fleet.addRing(ring)
	ch.remote = &remoteParty{beh: b, ring: ring}
	tx.emitChan(ChannelCreated, ch)

	alert := func(tx *Tx) {
		if b.EarlyMedia {
			_ = tx.EarlyMedia(uuid)
		} else {
			_ = tx.Ring(uuid)
		}
	}
	switch b.Mode {
	case ModeAnswer:
		alert(tx)
		tx.AfterFunc(uuid, b.RingFor, func(tx *Tx) {
			_ = tx.Answer(uuid)
			if b.HangupAfter > 0 {
				tx.AfterFunc(uuid, b.HangupAfter, func(tx *Tx) {
					tx.Hangup(uuid, CauseNormalClearing, ByRemote)
				})
			}
		})
	case ModeRing:
		alert(tx)
	default:
		if b.RingFor > 0 {
			alert(tx)
		}
		cause := b.refusal()
		tx.AfterFunc(uuid, b.RingFor, func(tx *Tx) {
			tx.Hangup(uuid, cause, ByRemote)
		})
	}
	return uuid, nil
}

// endRing closes the ring record of a phone or PSTN leg that hung up.
func (tx *Tx) endRing(ch *channel, wasUp bool, reason HangupReason) {
	r := ch.remote.ring
	now := ch.snap.Hungup
	cause := ch.snap.Cause
	outcome := OutcomeCancelled
	switch {
	case wasUp:
		outcome = OutcomeAnswered
	case reason == ByRemote:
		switch ch.remote.beh.Mode {
		case ModeBusy:
			outcome = OutcomeBusy
		case ModeReject:
			outcome = OutcomeRejected
		default:
			outcome = OutcomeFailed
		}
	}
	tx.s.fleet.updateRing(func() {
		r.End = now
		r.Cause = cause
		r.Outcome = outcome
	})
}

func (tx *Tx) dialTrunk(spec ChannelSpec, ep Endpoint) (string, error) {
	target := tx.s.fleet.Server(ep.Server)
	if target == nil || target == tx.s {
		return "", &CauseError{CauseNoRouteDestination}
	}
	if spec.Direction == 0 {
		spec.Direction = Outbound
	}
	ch, err := tx.create(spec, OriginDial)
	if err != nil {
		return "", err
	}
	uuid := ch.snap.UUID
	peer := tx.NewUUID()
	ch.snap.Endpoint = ep
	ch.snap.PeerServer = target.name
	ch.snap.PeerUUID = peer
	tx.emitChan(ChannelCreated, ch)
	call := InboundCall{
		Origin:      OriginTrunk,
		Caller:      spec.Caller,
		Destination: ep.Target,
		Headers:     spec.Headers,
		NetworkIP:   tx.s.ip,
		FromServer:  tx.s.name,
		PeerUUID:    uuid,
		UUID:        peer,
	}
	from := tx.s.name
	accepted := target.post(func(tx *Tx) {
		if _, err := tx.Inbound(call); err != nil {
			_ = tx.Post(from, func(tx *Tx) { tx.Hangup(uuid, CauseNormalTemporaryFailure, ByRemote) })
		}
	})
	if !accepted {
		// nobody answers the INVITE: the transport error fails the leg
		tx.AfterFunc(uuid, 0, func(tx *Tx) { tx.Hangup(uuid, CauseNormalTemporaryFailure, ByRemote) })
	}
	return uuid, nil
}
