//go:build !linux

package oomwatch

import "context"

// Watcher is unsupported outside Linux: New fails.
type Watcher struct{}

// New fails outside Linux.
func New(kind Kind, root string, max int) (*Watcher, error) { return nil, ErrUnsupported }

func (w *Watcher) Kind() Kind                                        { return "" }
func (w *Watcher) Watch(dir string) error                            { return ErrUnsupported }
func (w *Watcher) Unwatch(dir string)                                {}
func (w *Watcher) Watches() int                                      { return 0 }
func (w *Watcher) FDs() int                                          { return 0 }
func (w *Watcher) Run(ctx context.Context, notify func(Event)) error { return ErrUnsupported }
func (w *Watcher) Close() error                                      { return nil }
func (w *Watcher) WatchChildren(dir string) error                    { return ErrUnsupported }
func (w *Watcher) UnwatchChildren(dir string)                        {}
