//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Options of a run.
type Options struct {
	Levels  []int  // idle connections to measure at, increasing
	Loops   string // server.event_loops
	Timeout time.Duration
	// Settle is the pause after each step before measuring.
	Settle time.Duration
	Log    io.Writer // progress lines; nil: none
	// Exe is the program to start with serveArg (default: this one).
	Exe string
}

// Step is the measurement at one level.
type Step struct {
	Conns int
	memReport
}

// Result is a run's steps.
type Result struct {
	Loops string
	Steps []Step
	// Note says which levels the descriptor limit cut down.
	Note string
}

// PerConn returns the RSS, the RSS once free pages are returned, and the
// Go memory (heap and stacks) per connection between the first step and
// step i.
func (r *Result) PerConn(i int) (rss, rssFreed, goMem float64) {
	a, b := r.Steps[0], r.Steps[i]
	n := float64(b.Conns - a.Conns)
	if n <= 0 {
		return 0, 0, 0
	}
	return float64(b.RSS-a.RSS) / n, float64(b.RSSFreed-a.RSSFreed) / n,
		float64(b.HeapInuse+b.StackInuse-a.HeapInuse-a.StackInuse) / n
}

// Table formats the result.
func (r *Result) Table() string {
	var b strings.Builder
	if r.Note != "" {
		fmt.Fprintln(&b, r.Note)
	}
	fmt.Fprintf(&b, "event_loops=%s\n%8s %9s %9s %9s %9s %10s %11s %11s %13s\n", r.Loops,
		"conns", "RSS MiB", "freed MiB", "heap MiB", "stack MiB", "goroutines", "RSS/conn", "freed/conn", "heap+stk/conn")
	for i, s := range r.Steps {
		rss, freed, gm := r.PerConn(i)
		fmt.Fprintf(&b, "%8d %9.1f %9.1f %9.1f %9.1f %10d %9.0f B %9.0f B %11.0f B\n", s.Conns,
			float64(s.RSS)/(1<<20), float64(s.RSSFreed)/(1<<20), float64(s.HeapInuse)/(1<<20), float64(s.StackInuse)/(1<<20), s.Goroutines, rss, freed, gm)
	}
	return b.String()
}

// request is what each connection sends once: the gateway's banner.
const request = "GET / HTTP/1.1\r\nHost: idlemem\r\n\r\n"

// Run starts the gateway, opens the idle connections step by step and
// measures. It closes everything before returning.
func Run(opt Options) (*Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), opt.Timeout)
	defer cancel()
	levels, note := fitLevels(opt.Levels, raiseNoFile())
	exe := opt.Exe
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return nil, err
		}
	}
	ch, err := startChild(ctx, exe, opt.Loops)
	if err != nil {
		return nil, err
	}
	defer ch.stop()
	res := &Result{Loops: opt.Loops, Note: note}
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for _, n := range levels {
		more, err := openIdle(ctx, ch.addr, len(conns), n-len(conns))
		conns = append(conns, more...)
		if err != nil {
			return nil, fmt.Errorf("opening %d connections: %w", n, err)
		}
		time.Sleep(opt.Settle) // let the last requests finish, the runtime return pages
		m, err := ch.mem()
		if err != nil {
			return nil, err
		}
		res.Steps = append(res.Steps, Step{Conns: n, memReport: m})
		if opt.Log != nil {
			fmt.Fprintf(opt.Log, "%d idle connections: RSS %.1f MiB, %d goroutines\n", n, float64(m.RSS)/(1<<20), m.Goroutines)
		}
	}
	if err := checkAlive(conns); err != nil {
		return nil, err
	}
	return res, nil
}

// wantNoFile is the descriptor limit asked for: 50,000 connections and
// some room, in each process.
const wantNoFile = 1 << 17

// raiseNoFile raises the limit on descriptors (the child inherits it):
// to wantNoFile when allowed (CAP_SYS_RESOURCE), else the soft limit to
// the hard one. It returns the limit in force.
func raiseNoFile() int {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 1024
	}
	if l.Cur >= wantNoFile {
		return int(l.Cur)
	}
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: wantNoFile, Max: max(l.Max, wantNoFile)}) == nil {
		return wantNoFile
	}
	l.Cur = l.Max
	syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	return int(l.Cur)
}

// fdMargin is the descriptors kept for other uses than the connections.
const fdMargin = 200

// fitLevels caps the levels to what the descriptor limit allows (each
// process holds one end of every connection), saying so.
func fitLevels(levels []int, limit int) ([]int, string) {
	most := limit - fdMargin
	var out []int
	var cut []string
	for _, n := range levels {
		if n > most {
			cut = append(cut, fmt.Sprint(n))
			n = most
		}
		if len(out) == 0 || out[len(out)-1] != n {
			out = append(out, n)
		}
	}
	if len(cut) == 0 {
		return out, ""
	}
	return out, fmt.Sprintf("RLIMIT_NOFILE is %d and cannot be raised here: %s connections measured as %d", limit, strings.Join(cut, ", "), most)
}

// child is the gateway process.
type child struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Reader
	addr string
}

func startChild(ctx context.Context, exe, loops string) (*child, error) {
	cmd := exec.CommandContext(ctx, exe, serveArg, loops)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ch := &child{cmd: cmd, in: in, out: bufio.NewReader(outPipe)}
	line, err := ch.out.ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "ADDR ")
	if err != nil || !ok {
		ch.stop()
		return nil, fmt.Errorf("gateway did not start (%q, %v)", line, err)
	}
	ch.addr = addr
	return ch, nil
}

func (ch *child) mem() (memReport, error) {
	var m memReport
	if _, err := io.WriteString(ch.in, "mem\n"); err != nil {
		return m, err
	}
	line, err := ch.out.ReadBytes('\n')
	if err != nil {
		return m, err
	}
	return m, json.Unmarshal(line, &m)
}

func (ch *child) stop() {
	ch.in.Close()
	done := make(chan struct{})
	go func() { ch.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		ch.cmd.Process.Kill()
		<-done
	}
}

// ipBindAddressNoPort is IP_BIND_ADDRESS_NO_PORT (Linux 4.2).
const ipBindAddressNoPort = 24

// perSource is how many connections one loopback source address opens
// (below the ephemeral port range's size).
const perSource = 20000

// openIdle opens n connections (numbered from first), each doing one
// request, with a few workers.
func openIdle(ctx context.Context, addr string, first, n int) ([]net.Conn, error) {
	const workers = 32
	conns := make([]net.Conn, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				c, err := openOne(ctx, addr, first+i)
				if err != nil {
					mu.Lock()
					firstErr = cmpErr(firstErr, err)
					mu.Unlock()
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	var opened []net.Conn
	for _, c := range conns {
		if c != nil {
			opened = append(opened, c)
		}
	}
	return opened, firstErr
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// openOne connects from source address 127.0.0.(1 + i/perSource), sends
// the request and reads the whole answer.
func openOne(ctx context.Context, addr string, i int) (net.Conn, error) {
	d := net.Dialer{
		LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i/perSource))},
		// The port is chosen at connect, by the whole 4-tuple, not at
		// bind from the ports free for any destination.
		Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
			})
			return serr
		},
	}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if err := roundTrip(c); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// roundTrip sends the request on c and reads the banner answer.
func roundTrip(c net.Conn) error {
	c.SetDeadline(time.Now().Add(30 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, request); err != nil {
		return err
	}
	var buf [1024]byte
	got := 0
	for {
		n, err := c.Read(buf[got:])
		got += n
		if head, body, ok := bytes.Cut(buf[:got], []byte("\r\n\r\n")); ok && bytes.HasPrefix(head, []byte("HTTP/1.1 200")) && bytes.HasSuffix(body, []byte("running\n")) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("answer %q: %w", buf[:got], err)
		}
		if got == len(buf) {
			return errors.New("answer too long")
		}
	}
}

// checkAlive sends a second request on a sample of the idle connections:
// they must still be served.
func checkAlive(conns []net.Conn) error {
	step := max(1, len(conns)/100)
	for i := 0; i < len(conns); i += step {
		if err := roundTrip(conns[i]); err != nil {
			return fmt.Errorf("idle connection %d no longer served: %w", i, err)
		}
	}
	return nil
}
