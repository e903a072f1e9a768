package seccomp

import (
	"fmt"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Jump targets of asm.jump besides labels.
const (
	next  = -1 // the next instruction
	skip1 = -2 // the one after it
)

// ins is an instruction whose jump targets are labels until resolve.
type ins struct {
	code   uint16
	k      uint32
	jt, jf int // conditional jumps: labels, next or skip1
	ja     int // BPF_JA: label
}

// asm assembles a program with labels. Conditional jumps reach at most
// 255 instructions: the code generator keeps them short and uses BPF_JA
// (32-bit offsets) for anything far.
type asm struct {
	prog   []ins
	labels []int // label -> instruction index, -1 until bound
}

func (a *asm) label() int {
	a.labels = append(a.labels, -1)
	return len(a.labels) - 1
}

func (a *asm) bind(l int) { a.labels[l] = len(a.prog) }

func (a *asm) load(off uint32) {
	a.prog = append(a.prog, ins{code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, k: off})
}

func (a *asm) and(k uint32) {
	a.prog = append(a.prog, ins{code: unix.BPF_ALU | unix.BPF_AND | unix.BPF_K, k: k})
}

func (a *asm) ret(k uint32) {
	a.prog = append(a.prog, ins{code: unix.BPF_RET | unix.BPF_K, k: k})
}

func (a *asm) jump(op uint16, k uint32, jt, jf int) {
	a.prog = append(a.prog, ins{code: unix.BPF_JMP | op | unix.BPF_K, k: k, jt: jt, jf: jf})
}

func (a *asm) goTo(l int) {
	a.prog = append(a.prog, ins{code: unix.BPF_JMP | unix.BPF_JA, ja: l})
}

// far jumps to l when A op k holds.
func (a *asm) far(op uint16, k uint32, l int) {
	a.jump(op, k, next, skip1)
	a.goTo(l)
}

func (a *asm) resolve() ([]unix.SockFilter, error) {
	if len(a.prog) > unix.BPF_MAXINSNS {
		return nil, invalid("the compiled filter has %d instructions, more than the kernel's %d", len(a.prog), unix.BPF_MAXINSNS)
	}
	out := make([]unix.SockFilter, len(a.prog))
	off := func(i, t int) (uint8, error) {
		switch t {
		case next:
			return 0, nil
		case skip1:
			return 1, nil
		}
		d := a.labels[t] - i - 1
		if a.labels[t] < 0 || d < 0 || d > 255 {
			return 0, fmt.Errorf("seccomp: internal error: conditional jump from %d to label %d (at %d)", i, t, a.labels[t])
		}
		return uint8(d), nil
	}
	for i, in := range a.prog {
		out[i] = unix.SockFilter{Code: in.code, K: in.k}
		switch {
		case in.code == unix.BPF_JMP|unix.BPF_JA:
			d := a.labels[in.ja] - i - 1
			if a.labels[in.ja] < 0 || d < 0 {
				return nil, fmt.Errorf("seccomp: internal error: jump from %d to label %d", i, in.ja)
			}
			out[i].K = uint32(d)
		case in.code&0x07 == unix.BPF_JMP:
			var err error
			if out[i].Jt, err = off(i, in.jt); err != nil {
				return nil, err
			}
			if out[i].Jf, err = off(i, in.jf); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// generate writes the filter: dispatch on the architecture, then per ABI
// a binary search over ranges of system call numbers that share an
// outcome, with a rule block for each call that has conditions.
func generate(use []specs.Arch, tables map[specs.Arch]map[uint32]*entry, def uint32) ([]unix.SockFilter, error) {
	a := &asm{}
	a.load(offArch)
	start := map[specs.Arch]int{}
	for _, name := range use {
		start[name] = a.label()
		if abis[name].x32 {
			continue // reached from x86_64's block
		}
		a.far(unix.BPF_JEQ, abis[name].audit, start[name])
	}
	a.ret(retKillProcess)
	for _, name := range use {
		ab := abis[name]
		a.bind(start[name])
		if !ab.x32 {
			a.load(offNr)
		}
		if ab.name == specs.ArchX86_64 {
			// An x32 call has the x86_64 audit architecture: tell it by
			// its bit, before any x86_64 rule can match it.
			if slices.Contains(use, specs.ArchX32) {
				// Below 512, x32 numbers are x86_64's with the x32 bit,
				// and the calls the same (64-bit arguments included):
				// x86_64's search decides them without the bit, so x32
				// can never do what x86_64 may not. (A number that is
				// x86_64's only is one the kernel refuses for x32.) x32's
				// own calls, from 512 on, have their search.
				search := a.label()
				a.jump(unix.BPF_JGE, x32Bit, next, search)
				a.far(unix.BPF_JGE, x32Bit|x32Compat, start[specs.ArchX32])
				a.and(^uint32(x32Bit))
				a.bind(search)
			} else {
				a.jump(unix.BPF_JGE, x32Bit, next, skip1)
				a.ret(retKillProcess)
			}
		}
		var es []*entry
		for _, e := range tables[name] {
			es = append(es, e)
		}
		slices.SortFunc(es, func(x, y *entry) int { return int(x.nr) - int(y.nr) })
		low := uint32(0)
		if ab.x32 {
			low = x32Bit | x32Compat
		}
		rs := ranges(a, es, low, def)
		dispatch(a, rs, size(rs))
		for _, e := range es {
			if e.label < 0 {
				continue
			}
			a.bind(e.label)
			for i := 0; i < len(e.rules); {
				if n := eqRun(e.rules[i:], ab.is32); n > 1 {
					eqSet(a, e.rules[i:i+n], ab.is32)
					i += n
					continue
				}
				r := e.rules[i]
				fail := a.label()
				for _, c := range r.conds {
					compare(a, c, ab.is32, fail)
				}
				a.ret(r.ret)
				a.bind(fail)
				i++
			}
			if e.uncond != nil {
				a.ret(*e.uncond)
			} else {
				a.ret(def)
			}
		}
	}
	return a.resolve()
}

// span is a range of system call numbers, from first to the next span's
// first, that all end in one return value or one rule block.
type span struct {
	first uint32
	ret   uint32
	block int // label of a rule block, or -1
}

// ranges cuts the numbers from low up into spans: the calls of es (sorted
// by number) and the default action between them. Neighbours with the
// same return value merge, so a run of allowed calls is one span.
func ranges(a *asm, es []*entry, low, def uint32) []span {
	rs := []span{{first: low, ret: def, block: -1}}
	add := func(s span) {
		if last := rs[len(rs)-1]; last.first == s.first {
			// s replaces the default span that began here.
			rs = rs[:len(rs)-1]
		}
		if len(rs) > 0 {
			if last := rs[len(rs)-1]; last.block < 0 && s.block < 0 && last.ret == s.ret {
				return // s continues it
			}
		}
		rs = append(rs, s)
	}
	for _, e := range es {
		e.label = -1
		s := span{first: e.nr, block: -1}
		if len(e.rules) > 0 {
			e.label = a.label()
			s.block = e.label
		} else {
			s.ret = *e.uncond
		}
		add(s)
		if e.nr+1 != 0 {
			add(span{first: e.nr + 1, ret: def, block: -1})
		}
	}
	return rs
}

// size is the number of instructions dispatch emits for rs.
func size(rs []span) int {
	if len(rs) == 1 {
		return 1
	}
	mid := len(rs) / 2
	l, r := size(rs[:mid]), size(rs[mid:])
	if l > 255 {
		return 2 + l + r
	}
	return 1 + l + r
}

// dispatch emits the binary search over rs (n instructions, from size)
// with A holding the system call number.
func dispatch(a *asm, rs []span, n int) {
	if len(rs) == 1 {
		if rs[0].block >= 0 {
			a.goTo(rs[0].block)
		} else {
			a.ret(rs[0].ret)
		}
		return
	}
	mid := len(rs) / 2
	right := a.label()
	l := size(rs[:mid])
	if l > 255 {
		a.far(unix.BPF_JGE, rs[mid].first, right)
	} else {
		a.jump(unix.BPF_JGE, rs[mid].first, right, next)
	}
	dispatch(a, rs[:mid], l)
	a.bind(right)
	dispatch(a, rs[mid:], n-l)
}

// eqRun is how many rules from the start of rs are one set of values for
// one argument: one SCMP_CMP_EQ condition each, on the same argument with
// the same high half, with the same action (Docker's socket and
// personality rules).
func eqRun(rs []rule, is32 bool) int {
	first := rs[0]
	if len(first.conds) != 1 || first.conds[0].op != specs.OpEqualTo {
		return 0
	}
	c0 := first.conds[0]
	n := 1
	for n < len(rs) && n < 200 {
		r := rs[n]
		if len(r.conds) != 1 || r.ret != first.ret {
			break
		}
		c := r.conds[0]
		if c.op != specs.OpEqualTo || c.index != c0.index || (!is32 && c.value>>32 != c0.value>>32) {
			break
		}
		n++
	}
	return n
}

// eqSet emits a run found by eqRun: the high half is checked once, then
// the low half against each value.
func eqSet(a *asm, rs []rule, is32 bool) {
	c0 := rs[0].conds[0]
	lo := uint32(offArgs + 8*c0.index)
	fail, match := a.label(), a.label()
	if !is32 {
		a.load(lo + 4)
		a.jump(unix.BPF_JEQ, uint32(c0.value>>32), next, fail)
	}
	a.load(lo)
	for _, r := range rs {
		a.jump(unix.BPF_JEQ, uint32(r.conds[0].value), match, next)
	}
	a.goTo(fail)
	a.bind(match)
	a.ret(rs[0].ret)
	a.bind(fail)
}

// compare emits c: it falls through when c holds and jumps to fail when
// not. A 64-bit argument is compared as its high half, then its low half;
// on a 32-bit ABI only the low half counts.
func compare(a *asm, c cond, is32 bool, fail int) {
	lo := uint32(offArgs + 8*c.index)
	hi := lo + 4
	v, vhi := uint32(c.value), uint32(c.value>>32)
	ok := a.label()
	switch c.op {
	case specs.OpEqualTo:
		if !is32 {
			a.load(hi)
			a.jump(unix.BPF_JEQ, vhi, next, fail)
		}
		a.load(lo)
		a.jump(unix.BPF_JEQ, v, next, fail)
	case specs.OpNotEqual:
		if !is32 {
			a.load(hi)
			a.jump(unix.BPF_JEQ, vhi, next, ok)
		}
		a.load(lo)
		a.jump(unix.BPF_JEQ, v, fail, next)
	case specs.OpMaskedEqual:
		w, whi := uint32(c.value2), uint32(c.value2>>32)
		if !is32 {
			a.load(hi)
			a.and(vhi)
			a.jump(unix.BPF_JEQ, whi, next, fail)
		}
		a.load(lo)
		a.and(v)
		a.jump(unix.BPF_JEQ, w, next, fail)
	case specs.OpGreaterThan, specs.OpGreaterEqual:
		// hi > vhi, or hi == vhi and lo > (>=) v.
		if !is32 {
			a.load(hi)
			a.jump(unix.BPF_JGT, vhi, ok, next)
			a.jump(unix.BPF_JEQ, vhi, next, fail)
		}
		a.load(lo)
		op := uint16(unix.BPF_JGT)
		if c.op == specs.OpGreaterEqual {
			op = unix.BPF_JGE
		}
		a.jump(op, v, next, fail)
	case specs.OpLessThan, specs.OpLessEqual:
		// hi < vhi, or hi == vhi and lo < (<=) v.
		if !is32 {
			a.load(hi)
			a.jump(unix.BPF_JGT, vhi, fail, next)
			a.jump(unix.BPF_JEQ, vhi, next, ok)
		}
		a.load(lo)
		op := uint16(unix.BPF_JGE)
		if c.op == specs.OpLessEqual {
			op = unix.BPF_JGT
		}
		a.jump(op, v, fail, next)
	}
	a.bind(ok)
}
