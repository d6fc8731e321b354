package transport

import (
	"context"
	"testing"
)

func BenchmarkRPCCall(b *testing.B) {
	m := startMux(b, nil, nil, func(_ context.Context, _ uint8, body []byte) ([]byte, error) {
		return body, nil
	})
	c := newClient(b, nil)
	addr := m.Addr().String()
	body := make([]byte, 64)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Call(ctx, addr, 1, body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRPCCallParallel(b *testing.B) {
	m := startMux(b, nil, nil, func(_ context.Context, _ uint8, body []byte) ([]byte, error) {
		return body, nil
	})
	c := newClient(b, nil)
	addr := m.Addr().String()
	body := make([]byte, 64)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Call(context.Background(), addr, 1, body); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
