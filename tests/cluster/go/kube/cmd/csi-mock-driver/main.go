// Command csi-mock-driver serves the upstream in-memory CSI mock driver
// (k8s.io/kubernetes/test/e2e/storage/drivers/csi-test/mock/service) on a unix
// socket, with fault injection for the kubesnap system tests.
//
// Faults are read from a JSON file that is re-read on every call, so tests can
// switch them while the stack runs:
//
//	{
//	  "generation": "any string; a new value re-arms the fail counters",
//	  "ready_delay_seconds": 30,
//	  "fail": {"CreateSnapshot": {"count": 2, "code": "INTERNAL", "message": "boom"}},
//	  "latency_ms": {"CreateSnapshot": 500, "*": 0}
//	}
//
// ready_delay_seconds: snapshots created while it is set report ready_to_use
// false (in CreateSnapshot and ListSnapshots) until that many seconds passed.
// fail: the next count calls of a method fail with the gRPC code, before the
// mock sees them. latency_ms: sleep before a method ("*" for every method).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"log"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"k8s.io/kubernetes/test/e2e/storage/drivers/csi-test/mock/service"
)

// failRule makes the next Count calls of a method fail.
type failRule struct {
	Count   int    `json:"count"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// faultConfig is the JSON document of the faults file.
type faultConfig struct {
	Generation        string              `json:"generation"`
	ReadyDelaySeconds float64             `json:"ready_delay_seconds"`
	Fail              map[string]failRule `json:"fail"`
	LatencyMS         map[string]int      `json:"latency_ms"`
}

// faults holds the current configuration and what it has consumed so far.
type faults struct {
	path string

	mu        sync.Mutex
	raw       []byte
	cfg       faultConfig
	remaining map[string]int
	readyAt   map[string]time.Time // snapshot id -> when it may report ready
}

// reload re-reads the file; a changed content re-arms the fail counters.
func (f *faults) reload() {
	if f.path == "" {
		return
	}
	raw, err := os.ReadFile(f.path)
	if err != nil {
		raw = nil // a missing file means no faults
	}
	if bytes.Equal(raw, f.raw) {
		return
	}
	cfg := faultConfig{}
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &cfg); err != nil {
			// Keep the old config: a half-written file must not clear faults.
			log.Printf("faults: ignoring unreadable %s: %v", f.path, err)
			return
		}
	}
	f.raw, f.cfg = raw, cfg
	f.remaining = map[string]int{}
	for method, rule := range cfg.Fail {
		f.remaining[method] = rule.Count
	}
	log.Printf("faults: loaded %s", strings.TrimSpace(string(raw)))
}

// before applies latency and failures for a method; it returns the injected error.
func (f *faults) before(method string) error {
	f.mu.Lock()
	f.reload()
	latency := f.cfg.LatencyMS["*"]
	if ms, ok := f.cfg.LatencyMS[method]; ok {
		latency = ms
	}
	var injected error
	if f.remaining[method] > 0 {
		f.remaining[method]--
		rule := f.cfg.Fail[method]
		msg := rule.Message
		if msg == "" {
			msg = "kubesnap injected fault"
		}
		injected = status.Error(parseCode(rule.Code), msg)
	}
	f.mu.Unlock()
	if latency > 0 {
		time.Sleep(time.Duration(latency) * time.Millisecond)
	}
	return injected
}

// snapshotReady records a new snapshot's ready time and tells whether it is ready now.
func (f *faults) snapshotReady(id string, created bool) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	at, known := f.readyAt[id]
	if !known && created && f.cfg.ReadyDelaySeconds > 0 {
		at = time.Now().Add(time.Duration(f.cfg.ReadyDelaySeconds * float64(time.Second)))
		f.readyAt[id] = at
		known = true
	}
	return !known || !time.Now().Before(at)
}

// markSnapshots clears ready_to_use on snapshots still inside their delay.
// The response is cloned first: the mock hands out pointers into its cache.
func (f *faults) markSnapshots(resp any, err error) any {
	if err != nil {
		return resp
	}
	switch r := resp.(type) {
	case *csi.CreateSnapshotResponse:
		r = proto.Clone(r).(*csi.CreateSnapshotResponse)
		if s := r.GetSnapshot(); s != nil && !f.snapshotReady(s.GetSnapshotId(), true) {
			s.ReadyToUse = false
		}
		return r
	case *csi.ListSnapshotsResponse:
		r = proto.Clone(r).(*csi.ListSnapshotsResponse)
		for _, e := range r.GetEntries() {
			if s := e.GetSnapshot(); s != nil && !f.snapshotReady(s.GetSnapshotId(), false) {
				s.ReadyToUse = false
			}
		}
		return r
	}
	return resp
}

func (f *faults) forget(method string, req any, err error) {
	if d, ok := req.(*csi.DeleteSnapshotRequest); ok && method == "DeleteSnapshot" && err == nil {
		f.mu.Lock()
		delete(f.readyAt, d.GetSnapshotId())
		f.mu.Unlock()
	}
}

// intercept is the unary interceptor: faults, the mock call, and one log line.
func (f *faults) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	method := info.FullMethod[strings.LastIndex(info.FullMethod, "/")+1:]
	start := time.Now()
	resp, err := any(nil), f.before(method)
	if err == nil {
		resp, err = handler(ctx, req)
		resp = f.markSnapshots(resp, err)
		f.forget(method, req, err)
	}
	log.Printf("%s code=%s took=%s", method, status.Code(err), time.Since(start).Round(time.Millisecond))
	return resp, err
}

// parseCode accepts a gRPC code name as in the CSI spec (INTERNAL,
// RESOURCE_EXHAUSTED...) in any case, or its number; default INTERNAL.
func parseCode(name string) codes.Code {
	if n, err := strconv.Atoi(name); err == nil {
		return codes.Code(n)
	}
	var c codes.Code
	if err := c.UnmarshalJSON([]byte(strconv.Quote(strings.ToUpper(name)))); err == nil {
		return c
	}
	return codes.Internal
}

func main() {
	endpoint := flag.String("endpoint", "", "unix socket path to listen on")
	name := flag.String("name", "mock.csi.kubesnap.io", "CSI driver name")
	faultsFile := flag.String("faults-file", "", "JSON fault file, re-read on every call")
	flag.Parse()
	if *endpoint == "" {
		log.Fatal("--endpoint is required")
	}
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)

	// The stale socket of a killed predecessor would make Listen fail.
	_ = os.Remove(*endpoint)
	lis, err := net.Listen("unix", *endpoint)
	if err != nil {
		log.Fatalf("listen %s: %v", *endpoint, err)
	}
	// No kubelet runs, so attach is switched off: no VolumeAttachment is needed.
	mock := service.New(service.Config{DriverName: *name, DisableAttach: true})
	f := &faults{path: *faultsFile, readyAt: map[string]time.Time{}}
	srv := grpc.NewServer(grpc.UnaryInterceptor(f.intercept))
	csi.RegisterIdentityServer(srv, mock)
	csi.RegisterControllerServer(srv, mock)
	csi.RegisterNodeServer(srv, mock)

	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		srv.Stop()
	}()
	log.Printf("serving %s on %s (faults file %q)", *name, *endpoint, *faultsFile)
	if err := srv.Serve(lis); err != nil {
		log.Fatalf("serve: %v", err)
	}
	_ = os.Remove(*endpoint)
}
