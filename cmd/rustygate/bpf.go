package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/loader"
)

const bpfUsage = `Usage:
  rustygate bpf status [-c FILE] [--bpffs DIR]
      print the kernel datapath's mode, its attached programs and its pinned
      maps with their entry counts, and the connection steering of the l4
      port range listeners, read from the pins under DIR (default:
      datapath.bpffs of FILE when -c or $RUSTYGATE_CONFIG names one, else
      /sys/fs/bpf/rustygate). It loads and attaches nothing. Needs root.
`

// cmdBPF runs `rustygate bpf SUBCOMMAND`.
func cmdBPF(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "status" {
		fmt.Fprint(stderr, bpfUsage)
		return 2
	}
	fs := flag.NewFlagSet("bpf status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgFlag := fs.String("c", "", "configuration file to take datapath.bpffs from")
	fs.StringVar(cfgFlag, "config", "", "same as -c")
	dirFlag := fs.String("bpffs", "", "bpffs directory to read (overrides the configuration)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprint(stderr, bpfUsage)
		return 2
	}
	dir := *dirFlag
	if dir == "" {
		dir = "/sys/fs/bpf/rustygate"
		path := *cfgFlag
		if path == "" {
			path = os.Getenv("RUSTYGATE_CONFIG")
		}
		if path != "" {
			cfg, err := config.Load(path)
			if err != nil {
				fmt.Fprintln(stderr, err)
				return 1
			}
			dir = cfg.Datapath.BPFFS
		}
	}
	st, err := loader.ReadStatus(dir)
	if err != nil {
		fmt.Fprintf(stderr, "rustygate bpf status: %v\n", err)
		return 1
	}
	printBPFStatus(stdout, st)
	return 0
}

func printBPFStatus(w io.Writer, st loader.Status) {
	if !st.Pinned {
		fmt.Fprintf(w, "mode:  %s (nothing pinned under %s: no gateway runs the kernel datapath there)\n", st.Mode, st.Dir)
		return
	}
	attached := 0
	for _, p := range st.Programs {
		attached += len(p.Attached)
	}
	switch {
	case st.Mode == loader.ModeKernel:
		fmt.Fprintf(w, "mode:  kernel (%d attachment(s))\n", attached)
	case len(st.Programs) == 0 && len(st.Maps) == 0:
		fmt.Fprintf(w, "mode:  %s (no limiter pinned: the gateway limits in userspace or is stopped)\n", st.Mode)
	case len(st.Programs) == 0:
		fmt.Fprintf(w, "mode:  %s (maps persisted, no program pinned: the gateway is stopped or limits in userspace)\n", st.Mode)
	default:
		fmt.Fprintf(w, "mode:  %s (programs pinned but attached nowhere)\n", st.Mode)
	}
	fmt.Fprintf(w, "bpffs: %s\n", st.Dir)
	if len(st.Programs) == 0 && len(st.Maps) == 0 {
		printSteering(w, st.Steering)
		return
	}

	fmt.Fprintln(w, "\nprograms:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  ID\tTYPE\tNAME\tATTACHED TO")
	for _, p := range st.Programs {
		var at []string
		for _, a := range p.Attached {
			iface := a.Interface
			if iface == "" {
				iface = "(another netns)"
			}
			at = append(at, fmt.Sprintf("%s ifindex %d %s (link %d)", iface, a.Ifindex, a.Hook, a.LinkID))
		}
		if len(at) == 0 {
			at = []string{"-"}
		}
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\n", p.ID, p.Type, p.Name, strings.Join(at, "; "))
	}
	tw.Flush()

	fmt.Fprintln(w, "\nmaps:")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  ID\tTYPE\tNAME\tENTRIES\tMAX")
	for _, m := range st.Maps {
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%d\t%d\n", m.ID, m.Type, m.Name, m.Entries, m.MaxEntries)
	}
	tw.Flush()

	if c := st.Counters; c != nil {
		fmt.Fprintf(w, "\ncounters: passed %d, limited %d, denied %d, banned %d\n", c.Passed, c.Limited, c.Denied, c.Banned)
	}
	printSteering(w, st.Steering)
}

// printSteering lists the connection steering of the l4 port ranges.
func printSteering(w io.Writer, steering []loader.SteerStatus) {
	if len(steering) == 0 {
		return
	}
	fmt.Fprintln(w, "\nsteering (l4 port ranges, sk_lookup):")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  LISTENER\tSOCKET\tPROGRAM\tATTACHED")
	for _, s := range steering {
		sock := "none"
		if s.Socket != 0 {
			sock = fmt.Sprintf("cookie %d", s.Socket)
		}
		prog, at := "-", []string{"-"}
		if p := s.Program; p != nil {
			prog = fmt.Sprint(p.ID)
			if len(p.Attached) > 0 {
				at = at[:0]
			}
			for _, a := range p.Attached {
				at = append(at, fmt.Sprintf("%s (link %d)", a.Hook, a.LinkID))
			}
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", s.Listener, sock, prog, strings.Join(at, "; "))
	}
	tw.Flush()
}
