// Package filestore is an orchestrate.Store persisted in a directory:
// the default for one machine, where a Manager that restarts finds its
// objects again. It is package memstore's store (reads, watches and the
// whole contract come from there; package storetest checks it) with
// every write appended to a log file and fsynced before it is made, so
// that a write that returned survives a crash of the process or the
// machine.
//
// The directory holds store.log, a sequence of records (a length, a
// CRC-32C and the gob encoding of the write: its kind, type, version
// and the object), and store.lock, flocked by the one process that has
// the store open (a second Open fails and names the directory). Open
// replays the log: the objects come back with their UIDs, generations
// and versions, and the store's revision goes on from the last one. A
// record cut short by a crash while it was written is dropped (it was
// never acknowledged); a record whose checksum fails elsewhere is an
// error. When the log holds many more records than objects, it is
// rewritten as one record per object (to a temporary file, fsynced,
// renamed over the log).
//
// Watches replay changes (WatchOptions.Since) from the moment Open
// returned: a watch from an older version fails with ErrExpired, and a
// Manager lists again.
package filestore

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/berthlabs/berth/orchestrate"
	"github.com/berthlabs/berth/orchestrate/internal/memhook"
	"github.com/berthlabs/berth/orchestrate/internal/storeutil"
	_ "github.com/berthlabs/berth/orchestrate/memstore" // sets memhook.New
	"golang.org/x/sys/unix"
)

// Store is an orchestrate.Store kept in a directory. It is safe for
// concurrent use; Close releases the directory.
type Store struct {
	orchestrate.Store // memstore, calling s.write before each write

	dir  string
	lock *os.File

	mu      sync.Mutex
	log     *os.File
	records int               // in the log
	live    map[string][]byte // key → the record that holds its object
	rev     uint64
	broken  error // set when a write could not be made durable
	closed  bool
}

var _ orchestrate.Store = (*Store)(nil)

// revisionRecord is the type of the record a rewrite ends with: the
// store's revision, which the objects' versions may be under (the last
// write was a deletion).
const revisionRecord = "Revision"

// record is one write in the log.
type record struct {
	Type orchestrate.WatchEventType // Added, Modified or Deleted
	Kind string
	Rev  uint64
	Obj  []byte // the object's gob encoding
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Open opens the store in dir (made if missing), replaying its log.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("filestore: open %s: %w", dir, err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "store.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("filestore: open %s: %w", dir, err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("filestore: open %s: another store has it open (store.lock is locked)", dir)
		}
		return nil, fmt.Errorf("filestore: open %s: lock: %w", dir, err)
	}
	s := &Store{dir: dir, lock: lock, live: map[string][]byte{}}
	objs, err := s.replay()
	if err != nil {
		lock.Close()
		return nil, err
	}
	s.Store = memhook.New(objs, s.rev, s.write)
	if s.records > 2*len(s.live)+1024 {
		if err := s.rewrite(); err != nil {
			s.log.Close()
			lock.Close()
			return nil, err
		}
	}
	return s, nil
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

func (s *Store) logPath() string { return filepath.Join(s.dir, "store.log") }

// objKey keys an object among all kinds.
func objKey(kind string, obj orchestrate.Object) string {
	return kind + "/" + obj.Meta().Namespace + "/" + obj.Meta().Name
}

// replay reads the log, returns the objects it leaves and opens it for
// appending; a record cut short at the end is dropped.
func (s *Store) replay() ([]orchestrate.Object, error) {
	f, err := os.OpenFile(s.logPath(), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("filestore: open %s: %w", s.logPath(), err)
	}
	objs := map[string]orchestrate.Object{}
	r := bufio.NewReader(f)
	var off int64
	for {
		var hdr [8]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if err == io.EOF {
				break
			}
			if err == io.ErrUnexpectedEOF {
				break // cut short: never acknowledged
			}
			f.Close()
			return nil, fmt.Errorf("filestore: read %s: %w", s.logPath(), err)
		}
		n, sum := binary.LittleEndian.Uint32(hdr[:4]), binary.LittleEndian.Uint32(hdr[4:])
		buf := make([]byte, n)
		if _, err := io.ReadFull(r, buf); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				break
			}
			f.Close()
			return nil, fmt.Errorf("filestore: read %s: %w", s.logPath(), err)
		}
		if crc32.Checksum(buf, castagnoli) != sum {
			if _, err := r.Peek(1); err == io.EOF {
				break // the last record, torn
			}
			f.Close()
			return nil, fmt.Errorf("filestore: %s: the record at offset %d is corrupt (checksum mismatch)", s.logPath(), off)
		}
		var rec record
		if err := gob.NewDecoder(bytes.NewReader(buf)).Decode(&rec); err != nil {
			f.Close()
			return nil, fmt.Errorf("filestore: %s: the record at offset %d: %w", s.logPath(), off, err)
		}
		if rec.Type == revisionRecord {
			s.rev = max(s.rev, rec.Rev)
			s.records++
			off += 8 + int64(n)
			continue
		}
		obj, err := decode(rec)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("filestore: %s: the record at offset %d: %w", s.logPath(), off, err)
		}
		k := objKey(rec.Kind, obj)
		if rec.Type == orchestrate.WatchDeleted {
			delete(objs, k)
			delete(s.live, k)
		} else {
			objs[k] = obj
			s.live[k] = append(hdr[:8:8], buf...)
		}
		s.rev = max(s.rev, rec.Rev)
		s.records++
		off += 8 + int64(n)
	}
	// Drop a torn tail, so that appends follow the last good record.
	if err := f.Truncate(off); err != nil {
		f.Close()
		return nil, fmt.Errorf("filestore: truncate %s: %w", s.logPath(), err)
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	s.log = f
	// The log's directory entry is durable too (a new log's).
	if d, err := os.Open(s.dir); err == nil {
		d.Sync()
		d.Close()
	}
	out := make([]orchestrate.Object, 0, len(objs))
	for _, o := range objs {
		out = append(out, o)
	}
	return out, nil
}

// decode returns the object of a record, at the record's version.
func decode(rec record) (orchestrate.Object, error) {
	obj := storeutil.NewObject(rec.Kind)
	if obj == nil {
		return nil, fmt.Errorf("kind %q unknown", rec.Kind)
	}
	if err := gob.NewDecoder(bytes.NewReader(rec.Obj)).Decode(obj); err != nil {
		return nil, err
	}
	obj.Meta().ResourceVersion = rec.Rev
	return obj, nil
}

// encode frames a write as a log record.
func encode(typ orchestrate.WatchEventType, obj orchestrate.Object) ([]byte, error) {
	if storeutil.NewObject(obj.Kind()) == nil {
		return nil, fmt.Errorf("%s: a kind the file store does not hold: %w", obj.Kind(), orchestrate.ErrInvalid)
	}
	var ob bytes.Buffer
	if err := gob.NewEncoder(&ob).Encode(obj); err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	return frame(record{Type: typ, Kind: obj.Kind(), Rev: obj.Meta().ResourceVersion, Obj: ob.Bytes()})
}

// frame returns a record with its length and checksum before it.
func frame(rec record) ([]byte, error) {
	var rb bytes.Buffer
	rb.Write(make([]byte, 8))
	if err := gob.NewEncoder(&rb).Encode(rec); err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	b := rb.Bytes()
	binary.LittleEndian.PutUint32(b[:4], uint32(len(b)-8))
	binary.LittleEndian.PutUint32(b[4:8], crc32.Checksum(b[8:], castagnoli))
	return b, nil
}

// write appends one write to the log and fsyncs it; memstore calls it
// before making the write, with its lock held, so records are in
// version order.
func (s *Store) write(typ orchestrate.WatchEventType, obj orchestrate.Object) error {
	b, err := encode(typ, obj)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("filestore: the store is closed")
	}
	if s.broken != nil {
		return s.broken
	}
	if _, err := s.log.Write(b); err != nil {
		return s.fail(err)
	}
	if err := s.log.Sync(); err != nil {
		return s.fail(err)
	}
	k := objKey(obj.Kind(), obj)
	if typ == orchestrate.WatchDeleted {
		delete(s.live, k)
	} else {
		s.live[k] = b
	}
	s.records++
	s.rev = obj.Meta().ResourceVersion
	if s.records > 2*len(s.live)+1024 {
		if err := s.rewrite(); err != nil {
			return s.fail(err)
		}
	}
	return nil
}

// fail marks the store broken by err (a write that may be half on disk:
// what follows could not be replayed in order) and returns the error
// every later write gets; s.mu is held.
func (s *Store) fail(err error) error {
	s.broken = fmt.Errorf("filestore: %s: a write failed, the store takes no more (reopen it): %w", s.logPath(), err)
	return s.broken
}

// rewrite replaces the log with one record per live object; s.mu is
// held (or Open has not returned yet).
func (s *Store) rewrite() error {
	tmp := s.logPath() + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for _, b := range s.live {
		w.Write(b)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	// The revision goes on after a restart even when the latest write
	// was a deletion: the last record says so.
	rb, err := frame(record{Type: revisionRecord, Rev: s.rev})
	if err == nil {
		_, err = f.Write(rb)
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, s.logPath()); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if d, err := os.Open(s.dir); err == nil {
		d.Sync()
		d.Close()
	}
	s.log.Close()
	s.log = f
	s.records = len(s.live) + 1
	return nil
}

// Close closes the log and releases the directory; later writes fail.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	err := s.log.Close()
	s.lock.Close()
	return err
}
