package network

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/berthlabs/berth/namespace"
	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
)

// upstream makes a test host at 198.51.100.2 (the host's end of its veth
// is 198.51.100.1) serving TCP on port 80: it answers with the address
// the connection came from.
func upstream(t *testing.T) *namespace.Namespace {
	t.Helper()
	ns := testHost(t, "198.51.100.1", "198.51.100.2")
	l, err := Listen(context.Background(), ns, "tcp", "198.51.100.2:80")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			io.WriteString(c, host+"\n")
			c.Close()
		}
	}()
	return ns
}

func remoteSeen(ctx context.Context, ns *namespace.Namespace) (string, error) {
	c, err := Dial(ctx, ns, "tcp", "198.51.100.2:80")
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// dropForward installs what Docker leaves on a host: a forward chain
// whose policy drops, in a table of the test's own.
func dropForward(t *testing.T) (*nftables.Table, *nftables.Chain) {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseLasting()
	tbl := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: fmt.Sprintf("berthtest%d", os.Getpid())})
	drop := nftables.ChainPolicyDrop
	ch := c.AddChain(&nftables.Chain{Name: "FORWARD", Table: tbl, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &drop})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, _ := nftables.New()
		c.DelTable(tbl)
		c.Flush()
		c.CloseLasting()
	})
	return tbl, ch
}

func TestEgress(t *testing.T) {
	requireRoot(t)
	tbl, ch := dropForward(t)
	upstream(t)
	m := New(Options{})
	ctx := context.Background()
	out, err := m.Create(ctx, Config{Name: "out"})
	if err != nil {
		t.Fatal(err)
	}
	internal, err := m.Create(ctx, Config{Name: "in", Internal: true})
	if err != nil {
		t.Fatal(err)
	}
	ns, nsInt := newNS(t), newNS(t)
	if _, err := out.Attach(ctx, ns, AttachOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := internal.Attach(ctx, nsInt, AttachOptions{}); err != nil {
		t.Fatal(err)
	}
	// Out through NAT, past a forward chain that drops by default.
	ectx, ecancel := context.WithTimeout(ctx, 10*time.Second)
	defer ecancel()
	seen, err := remoteSeen(ectx, ns)
	if err != nil {
		t.Fatalf("egress: %v", err)
	}
	if seen != "198.51.100.1" {
		t.Fatalf("the upstream saw %s, want the host's masqueraded 198.51.100.1", seen)
	}
	dctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if seen, err := remoteSeen(dctx, nsInt); err == nil {
		t.Fatalf("an internal network reached the upstream (as %s)", seen)
	}
	link := m.hub.hostLink.Attrs().Name
	if n := ourRules(t, tbl, ch, link); n != 2 {
		t.Fatalf("%d accept rules in the dropping chain, want 2", n)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if n := ourRules(t, tbl, ch, link); n != 0 {
		t.Fatalf("%d accept rules left after Close", n)
	}
	if hostTableExists(t, link) {
		t.Fatal("host table left after Close")
	}
}

func ourRules(t *testing.T, tbl *nftables.Table, ch *nftables.Chain, link string) int {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseLasting()
	rules, err := c.GetRules(tbl, ch)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range rules {
		if s, _ := userdata.GetString(r.UserData, userdata.TypeComment); s == ruleComment+link {
			n++
		}
	}
	return n
}

func hostTableExists(t *testing.T, link string) bool {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseLasting()
	return tableExists(t, c, hostTablePrefix+link)
}

// tableExists reports whether the IPv4 table name exists where c looks.
func tableExists(t *testing.T, c *nftables.Conn, name string) bool {
	t.Helper()
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range tables {
		if tb.Name == name {
			return true
		}
	}
	return false
}

// TestIptablesReadsAccepts checks, in a namespace of the test's own,
// that iptables (nf_tables backend) can still read a FORWARD chain with
// a DROP policy after berth inserted its accept rules, and that the
// sweep takes them out again.
func TestIptablesReadsAccepts(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("needs iptables")
	}
	ns := newNS(t)
	ipt := func(args ...string) string {
		var out []byte
		namespace.Do(func() error {
			out, _ = exec.Command("iptables", args...).CombinedOutput()
			return nil
		}, ns)
		return string(out)
	}
	if out := ipt("-t", "filter", "-P", "FORWARD", "DROP"); out != "" {
		t.Skipf("iptables: %s", out)
	}
	c, err := nftables.New(nftables.WithNetNSFd(ns.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	if err := insertAccepts(c, "bhtest0001"); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	got := ipt("-t", "filter", "-S", "FORWARD")
	for _, want := range []string{
		`-A FORWARD -i bhtest0001 -m comment --comment "berth:bhtest0001" -j ACCEPT`,
		`-A FORWARD -o bhtest0001 -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "berth:bhtest0001" -j ACCEPT`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("iptables -S lacks %q:\n%s", want, got)
		}
	}
	if err := sweepRules(c, func(l string) bool { return l == "bhtest0001" }); err != nil {
		t.Fatal(err)
	}
	if got := ipt("-t", "filter", "-S", "FORWARD"); got != "-P FORWARD DROP\n" {
		t.Errorf("after the sweep:\n%s", got)
	}
}
