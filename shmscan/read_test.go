package shmscan

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// endless is a reader that never ends, as a pseudo-file gone wrong would.
type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	return len(p), nil
}

// readAllCapped returns a file of exactly readCap bytes whole, fails with
// ErrTooBig one byte beyond and on an endless reader (and returns), and
// reads into the buffer it is given, growing it only when needed.
func TestReadAllCapped(t *testing.T) {
	exact := bytes.Repeat([]byte("m"), readCap)
	if got, err := readAllCapped(bytes.NewReader(exact), "exact"); err != nil || !bytes.Equal(got, exact) {
		t.Fatalf("readCap bytes: %d bytes, err %v", len(got), err)
	}
	over := append(exact, 'm')
	if _, err := readAllCapped(bytes.NewReader(over), "over"); !errors.Is(err, ErrTooBig) {
		t.Fatalf("readCap+1 bytes: err %v, want ErrTooBig", err)
	}
	if _, err := readAllCapped(endless{}, "endless"); !errors.Is(err, ErrTooBig) {
		t.Fatalf("endless reader: err %v, want ErrTooBig", err)
	}
	if _, err := readAllCapped(io.MultiReader(bytes.NewReader([]byte("a")), errReader{}), "failing"); !errors.Is(err, errBoom) {
		t.Fatalf("failing reader: err %v, want errBoom", err)
	}

	buf := make([]byte, 0, 64)
	small := []byte("36 25 0:52 / /dev/shm rw - tmpfs shm rw\n")
	got, err := readAllCappedInto(bytes.NewReader(small), "small", &buf)
	if err != nil || !bytes.Equal(got, small) || &got[0] != &buf[:1][0] || cap(buf) != 64 {
		t.Fatalf("small read: %q err %v, cap %d: want it in the given buffer", got, err, cap(buf))
	}
	big := bytes.Repeat([]byte("y"), 1000)
	if got, err = readAllCappedInto(bytes.NewReader(big), "big", &buf); err != nil || !bytes.Equal(got, big) || cap(buf) < 1000 {
		t.Fatalf("big read: %d bytes err %v, buffer cap %d", len(got), err, cap(buf))
	}
}

var errBoom = errors.New("boom")

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errBoom }
