package archive

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"hash"
	"io"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

const (
	chunkSize = 1 << 20 // bytes handed from the decompressor to the unpacker at a time
	chunks    = 4       // chunks in flight
	// maxZstdWindow bounds the memory a zstd frame header can ask for
	// (zstd --long and --ultra use up to 128 MiB).
	maxZstdWindow = 1 << 27
)

var (
	magicGzip  = []byte{0x1f, 0x8b}
	magicZstd  = []byte{0x28, 0xb5, 0x2f, 0xfd}
	magicXz    = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	magicBzip2 = []byte{'B', 'Z', 'h'}
)

// decompress returns the uncompressed stream of r (plain, gzip or zstd,
// told apart by magic bytes) and a function that releases the
// decompressor.
func decompress(r io.Reader) (io.Reader, func(), error) {
	br := bufio.NewReaderSize(r, 256<<10)
	magic, err := br.Peek(6)
	if err != nil && err != io.EOF {
		return nil, nil, err
	}
	switch {
	case bytes.HasPrefix(magic, magicGzip):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, err
		}
		return zr, func() { zr.Close() }, nil
	case bytes.HasPrefix(magic, magicZstd):
		zr, err := zstd.NewReader(br, zstd.WithDecoderMaxWindow(maxZstdWindow))
		if err != nil {
			return nil, nil, err
		}
		return zr, zr.Close, nil
	case bytes.HasPrefix(magic, magicXz):
		return nil, nil, unsupportedErr("xz-compressed layers are not supported")
	case bytes.HasPrefix(magic, magicBzip2):
		return nil, nil, unsupportedErr("bzip2-compressed layers are not supported")
	}
	return br, func() {}, nil
}

// stream is the uncompressed layer as the unpacker reads it. A goroutine
// decompresses into a few large buffers ahead of the reader, so
// decompression overlaps writing files. The reader hashes each buffer as
// it takes it: decompression is the longer of the two sides.
type stream struct {
	ctx      context.Context
	full     chan []byte // filled buffers, closed at the end of the stream
	free     chan []byte // buffers to fill
	stop     chan struct{}
	wg       sync.WaitGroup
	cur      []byte // unread part of the current buffer
	buf      []byte // current buffer, to give back
	n        int64  // bytes read
	progress func(int64)

	hash hash.Hash // of what the reader took

	// Set by the producer before it closes full.
	err error // io.EOF at a clean end
}

func newStream(ctx context.Context, src io.Reader, max int64, progress func(int64)) *stream {
	s := &stream{
		ctx:      ctx,
		full:     make(chan []byte, chunks),
		free:     make(chan []byte, chunks),
		stop:     make(chan struct{}),
		progress: progress,
		hash:     sha256.New(),
	}
	for range chunks {
		s.free <- getChunk()
	}
	s.wg.Add(1)
	go s.produce(src, max)
	return s
}

func (s *stream) produce(src io.Reader, max int64) {
	defer s.wg.Done()
	defer close(s.full)
	var b []byte // the buffer being filled
	defer func() {
		if b != nil {
			putChunk(b)
		}
	}()
	var total int64
	for {
		select {
		case b = <-s.free:
		case <-s.stop:
			s.err = context.Canceled
			return
		}
		n, err := io.ReadFull(src, b[:cap(b)])
		if n > 0 {
			total += int64(n)
			if total > max {
				s.err = limitErr("layer is larger than %d bytes uncompressed (Options.MaxBytes)", max)
				return
			}
			select {
			case s.full <- b[:n]:
				b = nil
			case <-s.stop:
				s.err = context.Canceled
				return
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			s.err = io.EOF
			return
		}
		if err != nil {
			s.err = err
			return
		}
	}
}

func (s *stream) Read(p []byte) (int, error) {
	for len(s.cur) == 0 {
		if s.buf != nil {
			s.free <- s.buf[:cap(s.buf)] // never blocks: free has room for all buffers
			s.buf = nil
		}
		select {
		case b, ok := <-s.full:
			if !ok {
				return 0, s.err
			}
			s.buf, s.cur = b, b
			s.hash.Write(b)
			if s.progress != nil {
				s.progress(s.n)
			}
		case <-s.ctx.Done():
			return 0, s.ctx.Err()
		}
	}
	n := copy(p, s.cur)
	s.cur = s.cur[n:]
	s.n += int64(n)
	return n, nil
}

// drain reads the rest of the stream (what follows the tar's end marker
// is part of the layer and of its DiffID).
func (s *stream) drain() error {
	for {
		s.n += int64(len(s.cur))
		s.cur = nil
		if _, err := s.Read(nil); err != nil {
			if errors.Is(err, io.EOF) {
				if s.progress != nil {
					s.progress(s.n)
				}
				return nil
			}
			return err
		}
	}
}

// close stops the producer, waits for it, and gives the buffers back.
func (s *stream) close() {
	close(s.stop)
	s.wg.Wait()
	if s.buf != nil {
		putChunk(s.buf)
		s.buf, s.cur = nil, nil
	}
	for b := range s.full { // closed by the producer
		putChunk(b)
	}
	for {
		select {
		case b := <-s.free:
			putChunk(b)
		default:
			return
		}
	}
}

// chunks of chunkSize bytes, reused across calls of Apply.
var chunkPool = sync.Pool{New: func() any { return new([chunkSize]byte) }}

func getChunk() []byte { return chunkPool.Get().(*[chunkSize]byte)[:] }

func putChunk(b []byte) { chunkPool.Put((*[chunkSize]byte)(b[:chunkSize])) }

// sum returns the SHA-256 of the whole stream, once drained.
func (s *stream) sum() []byte { return s.hash.Sum(nil) }
