package engine

// writeBuffer holds what a connection wrote and the kernel did not take yet. The offset
// lives here rather than in the Connection, so an idle connection (no buffer) pays nothing
// for it, and it is an int: with flow control off a buffer may pass 2 GiB.
type writeBuffer struct {
	b   []byte
	off int // b[:off] is sent
}

func (b *writeBuffer) len() int { return len(b.b) - b.off }

// compact moves the unsent bytes to the front once at least half the buffer is sent, so a
// long-lived slow reader does not grow the buffer without bound.
func (b *writeBuffer) compact() {
	if b.off > 0 && b.off >= len(b.b)/2 {
		n := copy(b.b, b.b[b.off:])
		b.b = b.b[:n]
		b.off = 0
	}
}

// Buffers kept for reuse per worker: at most maxFreeBuffers, none larger than
// maxPooledBuffer (a buffer that grew for one slow peer goes back to the GC).
const (
	maxFreeBuffers  = 256
	maxPooledBuffer = 256 << 10
)

func (w *Worker) getBuffer() *writeBuffer {
	if n := len(w.freeBufs); n > 0 {
		b := w.freeBufs[n-1]
		w.freeBufs[n-1] = nil
		w.freeBufs = w.freeBufs[:n-1]
		return b
	}
	return &writeBuffer{b: make([]byte, 0, 4096)}
}

func (w *Worker) putBuffer(b *writeBuffer) {
	if cap(b.b) > maxPooledBuffer || len(w.freeBufs) >= maxFreeBuffers {
		return
	}
	b.b, b.off = b.b[:0], 0
	w.freeBufs = append(w.freeBufs, b)
}
