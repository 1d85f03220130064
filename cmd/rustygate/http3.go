package main

import (
	"context"
	"fmt"
	"net"

	"github.com/rustygate/rustygate/certs"
	"github.com/rustygate/rustygate/config"
)

// HTTP/3 (server.tls.http3): QUIC on the UDP port of server.tls.listen,
// with the HTTPS listener's certificate manager. The UDP socket is kept
// across reloads that leave the address alone and handed to the new
// process in a binary upgrade, as the TCP listeners are.

// h3ALPN is the protocol HTTP/3 handshakes offer.
var h3ALPN = []string{"h3"}

// listenUDP opens the HTTP/3 socket.
func listenUDP(addr string) (net.PacketConn, error) {
	var lc net.ListenConfig
	return lc.ListenPacket(context.Background(), "udp", addr)
}

// listenPacket returns the inherited UDP socket named role when it is
// bound to addr, else a new one.
func (in *inherited) listenPacket(role, addr string) (net.PacketConn, error) {
	if f := in.files[role]; f != nil {
		delete(in.files, role)
		pc, err := net.FilePacketConn(f)
		f.Close()
		if err == nil && sameAddr(pc.LocalAddr().String(), addr) {
			return pc, nil
		}
		if pc != nil {
			pc.Close()
		}
	}
	return listenUDP(addr)
}

// startHTTP3 opens the HTTP/3 socket at start, when server.tls.http3 is
// set, on the address the HTTPS listener ln is bound to (its port, when
// server.tls.listen asks for any).
func (g *gateway) startHTTP3(t *config.TLSConfig, m *certs.Manager, ln net.Listener) error {
	if !t.HTTP3 {
		return nil
	}
	pc, err := g.inherit.listenPacket("h3", ln.Addr().String())
	if err != nil {
		return fmt.Errorf("server.tls.http3: udp %s: %w", t.Listen, err)
	}
	g.h3pc, g.h3Addr = pc, t.Listen
	go g.serveHTTP3(pc, m)
	return nil
}

func (g *gateway) serveHTTP3(pc net.PacketConn, m *certs.Manager) {
	if err := g.srv.ServeHTTP3(pc, m.TLSConfig(h3ALPN)); err != nil {
		g.serveErr <- fmt.Errorf("http3: %w", err)
	}
}

// prepareHTTP3 binds the UDP socket a reload to t needs: when HTTP/3 is
// turned on or its address moves.
func (g *gateway) prepareHTTP3(t *config.TLSConfig, ch *tlsChange) error {
	if t == nil || !t.HTTP3 || (g.h3pc != nil && t.Listen == g.h3Addr) {
		return nil
	}
	pc, err := listenUDP(ch.listener(g.tlsLn).Addr().String())
	if err != nil {
		return fmt.Errorf("server.tls.http3: udp %s: %w", t.Listen, err)
	}
	ch.newPC = pc
	return nil
}

// commitHTTP3 serves the socket prepared for a reload and stops the one
// it replaces, or stops HTTP/3 when the reload turned it off. The
// stopped socket is closed: its HTTP/3 connections end, and clients
// reconnect (over TCP when HTTP/3 is off, as Alt-Svc is no longer sent).
func (g *gateway) commitHTTP3(ch *tlsChange, m *certs.Manager) {
	on := ch.cfg != nil && ch.cfg.HTTP3
	if g.h3pc != nil && (!on || ch.newPC != nil) {
		g.srv.StopHTTP3(g.h3pc)
		g.h3pc.Close()
		g.h3pc, g.h3Addr = nil, ""
	}
	if ch.newPC != nil {
		g.h3pc, g.h3Addr = ch.newPC, ch.cfg.Listen
		ch.newPC = nil
		go g.serveHTTP3(g.h3pc, m)
	}
}

// closeHTTP3 closes the UDP socket once the server has shut down.
func (g *gateway) closeHTTP3() {
	if g.h3pc != nil {
		g.h3pc.Close()
	}
}
