// Command csi-mock-driver serves the upstream in-memory CSI mock driver
// (k8s.io/kubernetes/test/e2e/storage/drivers/csi-test/mock/service) on a unix
// socket, with fault injection for the kubesnap system tests.
//
// Faults are read from a JSON file that is re-read on every call, so tests can
// switch them while the stack runs. The file maps a scope to its faults: a
// Kubernetes namespace, or "*" for calls of any other namespace:
//
//	{
//	  "my-test-ns": {
//	    "generation": "any string; a new value re-arms the fail counters",
//	    "ready_delay_seconds": 30,
//	    "fail": {"CreateSnapshot": {"count": 2, "code": "INTERNAL", "message": "boom"}},
//	    "latency_ms": {"CreateSnapshot": 500, "*": 0}
//	  }
//	}
//
// A document without scopes (just the inner object) means "*".
//
// ready_delay_seconds: snapshots created while it is set report ready_to_use
// false (in CreateSnapshot and ListSnapshots) until that many seconds passed.
// fail: the next count calls of a method fail with the gRPC code, before the
// mock sees them. latency_ms: sleep before a method ("*" for every method).
//
// A call's namespace comes from the sidecars' --extra-create-metadata
// parameters (CreateVolume, CreateSnapshot), or for later calls on a volume or
// snapshot, from the namespace recorded when it was created.
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

const (
	anyScope           = "*"
	pvcNamespaceKey    = "csi.storage.k8s.io/pvc/namespace"
	snapshotNamespaceK = "csi.storage.k8s.io/volumesnapshot/namespace"
)

// failRule makes the next Count calls of a method fail.
type failRule struct {
	Count   int    `json:"count"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// faultConfig is the fault set of one scope.
type faultConfig struct {
	Generation        string              `json:"generation"`
	ReadyDelaySeconds float64             `json:"ready_delay_seconds"`
	Fail              map[string]failRule `json:"fail"`
	LatencyMS         map[string]int      `json:"latency_ms"`
}

// scope is a fault set and what its fail rules have consumed so far.
type scope struct {
	cfg       faultConfig
	remaining map[string]int
}

// faults holds the current configuration and the bookkeeping it needs.
type faults struct {
	path string

	mu         sync.Mutex
	raw        []byte
	scopes     map[string]*scope
	readyAt    map[string]time.Time // snapshot id -> when it may report ready
	snapshotNS map[string]string    // snapshot id -> namespace of its VolumeSnapshot
	volumeNS   map[string]string    // volume id -> namespace of its PVC
}

// parseFaults reads either {"scope": {...}} or a bare fault set (scope "*").
func parseFaults(raw []byte) (map[string]faultConfig, error) {
	doc := map[string]json.RawMessage{}
	if len(bytes.TrimSpace(raw)) == 0 {
		return map[string]faultConfig{}, nil
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, err
	}
	for _, key := range []string{"generation", "ready_delay_seconds", "fail", "latency_ms"} {
		if _, bare := doc[key]; bare {
			doc = map[string]json.RawMessage{anyScope: raw}
			break
		}
	}
	out := map[string]faultConfig{}
	for name, body := range doc {
		cfg := faultConfig{}
		if err := json.Unmarshal(body, &cfg); err != nil {
			return nil, err
		}
		out[name] = cfg
	}
	return out, nil
}

// reload re-reads the file; a scope with a new generation re-arms its counters.
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
	configs, err := parseFaults(raw)
	if err != nil {
		// Keep the old faults: a broken file must not silently clear them.
		log.Printf("faults: ignoring unreadable %s: %v", f.path, err)
		return
	}
	scopes := map[string]*scope{}
	for name, cfg := range configs {
		if old, ok := f.scopes[name]; ok && old.cfg.Generation == cfg.Generation && cfg.Generation != "" {
			scopes[name] = old
			continue
		}
		s := &scope{cfg: cfg, remaining: map[string]int{}}
		for method, rule := range cfg.Fail {
			s.remaining[method] = rule.Count
		}
		scopes[name] = s
	}
	f.raw, f.scopes = raw, scopes
	log.Printf("faults: loaded %s", strings.TrimSpace(string(raw)))
}

// namespaceOf attributes a call to a Kubernetes namespace ("" if unknown).
func (f *faults) namespaceOf(req any) string {
	switch r := req.(type) {
	case *csi.CreateSnapshotRequest:
		return r.GetParameters()[snapshotNamespaceK]
	case *csi.CreateVolumeRequest:
		return r.GetParameters()[pvcNamespaceKey]
	case interface{ GetSnapshotId() string }:
		return f.snapshotNS[r.GetSnapshotId()]
	case interface{ GetVolumeId() string }:
		return f.volumeNS[r.GetVolumeId()]
	}
	return ""
}

// scopeFor picks the namespace's own fault set, else the "*" one (may be nil).
func (f *faults) scopeFor(namespace string) *scope {
	if s, ok := f.scopes[namespace]; ok && namespace != "" {
		return s
	}
	return f.scopes[anyScope]
}

// before applies latency and failures; it returns the injected error.
func (f *faults) before(method, namespace string) error {
	f.mu.Lock()
	s := f.scopeFor(namespace)
	if s == nil {
		f.mu.Unlock()
		return nil
	}
	latency := s.cfg.LatencyMS[anyScope]
	if ms, ok := s.cfg.LatencyMS[method]; ok {
		latency = ms
	}
	var injected error
	if s.remaining[method] > 0 {
		s.remaining[method]--
		rule := s.cfg.Fail[method]
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

// after records the namespace of new objects and hides not-yet-ready snapshots.
// Responses are cloned before changes: the mock hands out pointers into its cache.
func (f *faults) after(namespace string, resp any) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	switch r := resp.(type) {
	case *csi.CreateVolumeResponse:
		f.volumeNS[r.GetVolume().GetVolumeId()] = namespace
	case *csi.CreateSnapshotResponse:
		id := r.GetSnapshot().GetSnapshotId()
		if _, known := f.snapshotNS[id]; !known {
			f.snapshotNS[id] = namespace
			if s := f.scopeFor(namespace); s != nil && s.cfg.ReadyDelaySeconds > 0 {
				f.readyAt[id] = now.Add(time.Duration(s.cfg.ReadyDelaySeconds * float64(time.Second)))
			}
		}
		if r.GetSnapshot() != nil && now.Before(f.readyAt[id]) {
			r = proto.Clone(r).(*csi.CreateSnapshotResponse)
			r.Snapshot.ReadyToUse = false
		}
		return r
	case *csi.ListSnapshotsResponse:
		r = proto.Clone(r).(*csi.ListSnapshotsResponse)
		for _, e := range r.GetEntries() {
			if s := e.GetSnapshot(); s != nil && now.Before(f.readyAt[s.GetSnapshotId()]) {
				s.ReadyToUse = false
			}
		}
		return r
	}
	return resp
}

// forget drops the bookkeeping of deleted snapshots and volumes.
func (f *faults) forget(req any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch r := req.(type) {
	case *csi.DeleteSnapshotRequest:
		delete(f.snapshotNS, r.GetSnapshotId())
		delete(f.readyAt, r.GetSnapshotId())
	case *csi.DeleteVolumeRequest:
		delete(f.volumeNS, r.GetVolumeId())
	}
}

// intercept is the unary interceptor: faults, the mock call, and one log line.
func (f *faults) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	method := info.FullMethod[strings.LastIndex(info.FullMethod, "/")+1:]
	start := time.Now()
	f.mu.Lock()
	f.reload()
	namespace := f.namespaceOf(req)
	f.mu.Unlock()
	resp, err := any(nil), f.before(method, namespace)
	if err == nil {
		resp, err = handler(ctx, req)
		if err == nil {
			resp = f.after(namespace, resp)
			f.forget(req)
		}
	}
	log.Printf("%s namespace=%q code=%s took=%s", method, namespace, status.Code(err), time.Since(start).Round(time.Millisecond))
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
	f := &faults{
		path:       *faultsFile,
		readyAt:    map[string]time.Time{},
		snapshotNS: map[string]string{},
		volumeNS:   map[string]string{},
	}
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
