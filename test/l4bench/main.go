// Command l4bench is the backend and the load generator of the L4 (TCP
// proxy) benchmark; test/l4bench/run.sh (`make bench-l4`) starts the
// proxies, calls it and writes the table.
//
//	l4bench serve -listen 127.0.0.1:19101
//	l4bench measure -addr 127.0.0.1:19102 -pid 1234 -duration 5s -rtt 20000
//
// serve answers each connection by its first byte:
//
//	'k' sink    read to EOF, then answer the byte count (8 bytes, big endian)
//	's' source  send until the client goes away
//	'e' echo    echo until EOF, then half-close
//
// measure runs, one after the other on fresh connections:
//
//	up      client -> sink for -duration; MiB/s = bytes the sink counted /
//	        time until its answer (so nothing still buffered is counted)
//	down    source -> client for -duration; MiB/s = bytes read / time
//	echo    client writes and reads at once for -duration, then half-closes
//	        and reads to EOF; MiB/s = bytes echoed back / time (the proxy
//	        moves twice that)
//	rtt     -rtt round trips of 64 bytes on one connection (TCP_NODELAY);
//	        p50 and p99 in microseconds
//
// With -pid, the utime+stime of that process (/proc/PID/stat) is read
// before and after each of up, down and echo, and CPU seconds per GiB
// relayed is reported (echo bytes count twice: they cross the proxy both
// ways). It prints one line of key=value pairs.
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	mib     = 1 << 20
	gib     = 1 << 30
	bufSize = 256 << 10
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	switch os.Args[1] {
	case "serve":
		os.Exit(serve(os.Args[2:]))
	case "measure":
		os.Exit(measure(os.Args[2:]))
	}
	usage()
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: l4bench serve -listen ADDR | l4bench measure -addr ADDR [-pid PID] [-duration 5s] [-rtt 20000]")
	os.Exit(2)
}

// ---------------------------------------------------------------- serve

func serve(args []string) int {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:19101", "listen address")
	fs.Parse(args)
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), "tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "l4bench serve:", err)
		return 1
	}
	fmt.Fprintln(os.Stderr, "l4bench backend listening on", ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "l4bench serve: accept:", err)
			return 1
		}
		go handle(c.(*net.TCPConn))
	}
}

func handle(c *net.TCPConn) {
	defer c.Close()
	// A connection left open by a dead client must not live forever.
	c.SetDeadline(time.Now().Add(10 * time.Minute))
	var mode [1]byte
	if _, err := io.ReadFull(c, mode[:]); err != nil {
		return
	}
	buf := make([]byte, bufSize)
	switch mode[0] {
	case 'k':
		var n uint64
		for {
			m, err := c.Read(buf)
			n += uint64(m)
			if err == io.EOF {
				break
			}
			if err != nil {
				return
			}
		}
		var ans [8]byte
		binary.BigEndian.PutUint64(ans[:], n)
		c.Write(ans[:])
	case 's':
		for i := range buf {
			buf[i] = byte(i * 7)
		}
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	case 'e':
		for {
			m, err := c.Read(buf)
			if m > 0 {
				if _, werr := c.Write(buf[:m]); werr != nil {
					return
				}
			}
			if err == io.EOF {
				c.CloseWrite()
				io.Copy(io.Discard, c)
				return
			}
			if err != nil {
				return
			}
		}
	}
}

// ---------------------------------------------------------------- measure

type cpuMeter struct {
	pid   int
	hz    float64
	ticks float64 // accumulated
	bytes float64 // relayed while measured
}

func (m *cpuMeter) read() (float64, error) {
	if m.pid == 0 {
		return 0, nil
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", m.pid))
	if err != nil {
		return 0, err
	}
	// Skip "pid (comm) ": comm may hold spaces and parentheses.
	s := string(b)
	s = s[strings.LastIndexByte(s, ')')+2:]
	f := strings.Fields(s)
	// f[0] is field 3 (state): utime is field 14, stime 15.
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return ut + st, nil
}

// around measures f's CPU on the proxy; f returns the bytes it relayed.
func (m *cpuMeter) around(f func() (float64, error)) error {
	before, err := m.read()
	if err != nil {
		return err
	}
	n, err := f()
	if err != nil {
		return err
	}
	after, err := m.read()
	if err != nil {
		return err
	}
	m.ticks += after - before
	m.bytes += n
	return nil
}

func measure(args []string) int {
	fs := flag.NewFlagSet("measure", flag.ExitOnError)
	addr := fs.String("addr", "", "address to measure (a proxy in front of `l4bench serve`, or the backend itself)")
	pid := fs.Int("pid", 0, "PID of the proxy process, for CPU per GiB (0: not measured)")
	hz := fs.Float64("clk-tck", 100, "clock ticks per second of /proc/PID/stat (getconf CLK_TCK)")
	dur := fs.Duration("duration", 5*time.Second, "length of each throughput test")
	rtts := fs.Int("rtt", 20000, "64-byte round trips for the latency test")
	tests := fs.String("tests", "up,down,echo,rtt", "tests to run, comma separated")
	fs.Parse(args)
	if *addr == "" {
		fmt.Fprintln(os.Stderr, "l4bench measure: -addr is required")
		return 2
	}
	m := &cpuMeter{pid: *pid, hz: *hz}
	var out []string
	add := func(k string, v float64, prec int) {
		out = append(out, k+"="+strconv.FormatFloat(v, 'f', prec, 64))
	}
	for t := range strings.SplitSeq(*tests, ",") {
		var err error
		switch t {
		case "up":
			err = m.around(func() (float64, error) {
				n, secs, err := bulkUp(*addr, *dur)
				add("up_mibs", n/mib/secs, 1)
				return n, err
			})
		case "down":
			err = m.around(func() (float64, error) {
				n, secs, err := bulkDown(*addr, *dur)
				add("down_mibs", n/mib/secs, 1)
				return n, err
			})
		case "echo":
			err = m.around(func() (float64, error) {
				n, secs, err := echo(*addr, *dur)
				add("echo_mibs", n/mib/secs, 1)
				return 2 * n, err
			})
		case "rtt":
			var p50, p99 float64
			p50, p99, err = rtt(*addr, *rtts)
			add("rtt_p50_us", p50, 1)
			add("rtt_p99_us", p99, 1)
		default:
			err = fmt.Errorf("unknown test %q", t)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "l4bench measure %s: %s: %v\n", *addr, t, err)
			return 1
		}
	}
	if m.pid != 0 && m.bytes > 0 {
		add("cpu_s", m.ticks/m.hz, 2)
		add("relayed_gib", m.bytes/gib, 2)
		add("cpu_s_per_gib", m.ticks/m.hz/(m.bytes/gib), 3)
	}
	fmt.Println(strings.Join(out, " "))
	return 0
}

func dial(addr string, mode byte, limit time.Duration) (*net.TCPConn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	tc := c.(*net.TCPConn)
	tc.SetDeadline(time.Now().Add(limit))
	if _, err := tc.Write([]byte{mode}); err != nil {
		tc.Close()
		return nil, err
	}
	return tc, nil
}

func bulkUp(addr string, d time.Duration) (bytes, secs float64, err error) {
	c, err := dial(addr, 'k', d+60*time.Second)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	buf := make([]byte, bufSize)
	start := time.Now()
	for time.Since(start) < d {
		if _, err := c.Write(buf); err != nil {
			return 0, 0, err
		}
	}
	c.CloseWrite()
	var ans [8]byte
	if _, err := io.ReadFull(c, ans[:]); err != nil {
		return 0, 0, fmt.Errorf("reading the sink's count: %w", err)
	}
	return float64(binary.BigEndian.Uint64(ans[:])), time.Since(start).Seconds(), nil
}

func bulkDown(addr string, d time.Duration) (bytes, secs float64, err error) {
	c, err := dial(addr, 's', d+60*time.Second)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	buf := make([]byte, bufSize)
	var n int64
	start := time.Now()
	for time.Since(start) < d {
		m, err := c.Read(buf)
		n += int64(m)
		if err != nil {
			return 0, 0, err
		}
	}
	return float64(n), time.Since(start).Seconds(), nil
}

func echo(addr string, d time.Duration) (bytes, secs float64, err error) {
	c, err := dial(addr, 'e', d+60*time.Second)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	start := time.Now()
	werr := make(chan error, 1)
	go func() {
		buf := make([]byte, bufSize)
		for time.Since(start) < d {
			if _, err := c.Write(buf); err != nil {
				werr <- err
				return
			}
		}
		werr <- c.CloseWrite()
	}()
	buf := make([]byte, bufSize)
	var n int64
	for {
		m, err := c.Read(buf)
		n += int64(m)
		if err == io.EOF {
			break
		}
		if err != nil {
			c.Close()
			<-werr
			return 0, 0, err
		}
	}
	if err := <-werr; err != nil {
		return 0, 0, err
	}
	return float64(n), time.Since(start).Seconds(), nil
}

func rtt(addr string, n int) (p50, p99 float64, err error) {
	c, err := dial(addr, 'e', 5*time.Minute)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	msg := make([]byte, 64)
	got := make([]byte, 64)
	lat := make([]time.Duration, 0, n)
	// A few unmeasured round trips first: connect to the backend, warm up.
	for i := -100; i < n; i++ {
		t0 := time.Now()
		if _, err := c.Write(msg); err != nil {
			return 0, 0, err
		}
		if _, err := io.ReadFull(c, got); err != nil {
			return 0, 0, err
		}
		if i >= 0 {
			lat = append(lat, time.Since(t0))
		}
	}
	slices.Sort(lat)
	q := func(p float64) float64 {
		return float64(lat[int(p*float64(len(lat)-1))].Nanoseconds()) / 1000
	}
	return q(0.50), q(0.99), nil
}
