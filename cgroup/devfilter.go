package cgroup

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// cgroup v2 has no devices files: device access is decided by eBPF
// programs of type BPF_PROG_TYPE_CGROUP_DEVICE attached to the cgroup.
// The kernel runs every program attached to the cgroup and its ancestors
// for each open and mknod of a device node, and allows it only if all of
// them return 1. Their context is struct bpf_cgroup_dev_ctx:
//
//	u32 access_type; // (access << 16) | type
//	u32 major;
//	u32 minor;
//
// with type BPF_DEVCG_DEV_BLOCK (1) or BPF_DEVCG_DEV_CHAR (2), and access
// a mask of BPF_DEVCG_ACC_MKNOD (1), READ (2) and WRITE (4).

// deviceFilter compiles rules into a device program: every access is
// denied unless a rule matches it, and of the rules that match, the last
// one decides (as on v1, where a later line undoes an earlier one with the
// same numbers). A rule matches when the type and numbers match and the
// access asked for is within the rule's.
func deviceFilter(rules []DeviceRule) (asm.Instructions, error) {
	const (
		typ    = asm.R2
		access = asm.R3
		major  = asm.R4
		minor  = asm.R5
		tmp    = asm.R6
	)
	insts := asm.Instructions{
		asm.LoadMem(typ, asm.R1, 0, asm.Word),
		asm.Mov.Reg32(access, typ),
		asm.And.Imm32(typ, 0xffff),
		asm.RSh.Imm32(access, 16),
		asm.LoadMem(major, asm.R1, 4, asm.Word),
		asm.LoadMem(minor, asm.R1, 8, asm.Word),
	}
	for i := len(rules) - 1; i >= 0; i-- {
		d := rules[i]
		if err := d.validate(); err != nil {
			return nil, err
		}
		next := fmt.Sprintf("rule%d", i-1)
		var block asm.Instructions
		switch d.Type {
		case CharDevice:
			block = append(block, asm.JNE.Imm(typ, 2, next))
		case BlockDevice:
			block = append(block, asm.JNE.Imm(typ, 1, next))
		}
		if bits := d.accessBits(); bits != 7 {
			// Some access asked for that the rule lacks: no match.
			block = append(block,
				asm.Mov.Reg32(tmp, access),
				asm.And.Imm32(tmp, int32(^bits&7)),
				asm.JNE.Imm(tmp, 0, next),
			)
		}
		if d.Type != AllDevices && d.Major != Wildcard {
			block = append(block, asm.JNE.Imm(major, int32(d.Major), next))
		}
		if d.Type != AllDevices && d.Minor != Wildcard {
			block = append(block, asm.JNE.Imm(minor, int32(d.Minor), next))
		}
		verdict := int32(0)
		if d.Allow {
			verdict = 1
		}
		block = append(block, asm.Mov.Imm32(asm.R0, verdict), asm.Return())
		block[0] = block[0].WithSymbol(fmt.Sprintf("rule%d", i))
		insts = append(insts, block...)
	}
	insts = append(insts,
		asm.Mov.Imm32(asm.R0, 0).WithSymbol("rule-1"),
		asm.Return(),
	)
	return insts, nil
}

// maxDevicePrograms is how many loaded device programs the cache keeps.
const maxDevicePrograms = 16

// devicePrograms are loaded device programs by their rules (as the
// String of each, joined), in the order they were loaded. Loading is most
// of the cost of a device filter (the kernel verifies the program), and
// the kernel lets one program be attached to many cgroups: containers
// with the same rules, Docker's defaults mostly, share one.
var devicePrograms struct {
	sync.Mutex
	progs map[string]*devProg
	order []string
}

type devProg struct {
	prog *ebpf.Program
	id   ebpf.ProgramID
}

// attachDeviceProgram attaches the loaded program for rules to the cgroup
// directory fd, loading it when it is not cached, and returns its ID. The
// cache owns the programs (one it evicts stays in the kernel as long as it
// is attached somewhere); its lock is held throughout, so that no program
// is closed while it is being attached.
func attachDeviceProgram(fd int, rules []DeviceRule) (ebpf.ProgramID, error) {
	var b strings.Builder
	for _, r := range rules {
		b.WriteString(r.String())
		b.WriteByte('\n')
	}
	key := b.String()
	dp := &devicePrograms
	dp.Lock()
	defer dp.Unlock()
	p, ok := dp.progs[key]
	if !ok {
		var err error
		if p, err = loadDeviceProgram(rules); err != nil {
			return 0, err
		}
		if dp.progs == nil {
			dp.progs = map[string]*devProg{}
		}
		if len(dp.order) == maxDevicePrograms {
			dp.progs[dp.order[0]].prog.Close()
			delete(dp.progs, dp.order[0])
			dp.order = dp.order[1:]
		}
		dp.progs[key] = p
		dp.order = append(dp.order, key)
	}
	err := link.RawAttachProgram(link.RawAttachProgramOptions{
		Target: fd, Program: p.prog, Attach: ebpf.AttachCGroupDevice, Flags: unix.BPF_F_ALLOW_MULTI,
	})
	return p.id, err
}

// loadDeviceProgram compiles rules and loads the program into the kernel.
func loadDeviceProgram(rules []DeviceRule) (*devProg, error) {
	insts, err := deviceFilter(rules)
	if err != nil {
		return nil, err
	}
	prog, err := ebpf.NewProgramWithOptions(&ebpf.ProgramSpec{
		Name:         "berth_devices",
		Type:         ebpf.CGroupDevice,
		Instructions: insts,
		License:      "Apache-2.0",
	}, ebpf.ProgramOptions{})
	if err != nil {
		return nil, fmt.Errorf("load the device filter: %w", err)
	}
	info, err := prog.Info()
	if err != nil {
		prog.Close()
		return nil, fmt.Errorf("device filter: %w", err)
	}
	id, ok := info.ID()
	if !ok {
		prog.Close()
		return nil, fmt.Errorf("device filter: the kernel reports no program ID: %w", ErrNotSupported)
	}
	return &devProg{prog: prog, id: id}, nil
}

// attachDeviceFilter attaches a program made from rules to the cgroup
// directory dir, then detaches every other device program attached to it
// directly (those of an earlier Update, or of another process that made
// the cgroup), so that only the new rules apply there; fresh says dir was
// just made, with nothing attached. Between the two steps both programs
// apply: access is never wider than either allows. A nil rules detaches
// every device program: devices are not controlled.
func attachDeviceFilter(dir string, rules []DeviceRule, fresh bool) error {
	fd, err := open(dir, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var keep ebpf.ProgramID
	if rules != nil {
		if keep, err = attachDeviceProgram(fd, rules); err != nil {
			return fmt.Errorf("attach the device filter to %s: %w", dir, err)
		}
		if fresh {
			return nil
		}
	}
	q, err := link.QueryPrograms(link.QueryOptions{Target: fd, Attach: ebpf.AttachCGroupDevice})
	if err != nil {
		return fmt.Errorf("list the device filters of %s: %w", dir, err)
	}
	var errs []error
	for _, p := range q.Programs {
		if p.ID == keep {
			continue
		}
		old, err := ebpf.NewProgramFromID(p.ID)
		if errors.Is(err, unix.ENOENT) {
			continue // detached meanwhile
		}
		if err == nil {
			err = link.RawDetachProgram(link.RawDetachProgramOptions{Target: fd, Program: old, Attach: ebpf.AttachCGroupDevice})
			old.Close()
		}
		if err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("detach device filter %d from %s: %w", p.ID, dir, err))
		}
	}
	return errors.Join(errs...)
}
