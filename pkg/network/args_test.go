package network

import (
	"encoding/json"
	"errors"
	"math"
	"testing"
)

func TestParseQuantity(t *testing.T) {
	tests := []struct {
		in      string
		want    uint64
		wantErr bool
	}{
		{in: "100", want: 100},
		{in: "10M", want: 10_000_000},
		{in: "1k", want: 1000},
		{in: "1Ki", want: 1024},
		{in: "1.5Gi", want: 1610612736},
		{in: "2e6", want: 2_000_000},
		{in: "1500m", want: 2}, // rounds up like resource.Quantity.Value
		{in: " 1G ", want: 1_000_000_000},
		{in: "1P", want: 1e15},
		{in: "", wantErr: true},
		{in: "M", wantErr: true},
		{in: "-1M", wantErr: true},
		{in: "1X", wantErr: true},
		{in: "abc", wantErr: true},
		{in: "1e", wantErr: true},
		{in: "100Ei", wantErr: true},
	}
	for _, tt := range tests {
		got, err := parseQuantity(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("parseQuantity(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			continue
		}
		if !tt.wantErr && got != tt.want {
			t.Errorf("parseQuantity(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestCapabilityArgs(t *testing.T) {
	tests := []struct {
		name    string
		pod     Pod
		want    string // JSON of the capability map
		wantErr bool
	}{
		{name: "nothing", pod: Pod{}, want: `{}`},
		{
			name: "ports, host port 0 skipped, protocol normalised",
			pod: Pod{PortMappings: []PortMapping{
				{HostPort: 8080, ContainerPort: 80, Protocol: "TCP"},
				{HostPort: 0, ContainerPort: 81, Protocol: "tcp"},
				{HostPort: 5353, ContainerPort: 53, Protocol: "udp", HostIP: "127.0.0.1"},
				{HostPort: 9000, ContainerPort: 9000},
			}},
			want: `{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"},` +
				`{"hostPort":5353,"containerPort":53,"protocol":"udp","hostIP":"127.0.0.1"},` +
				`{"hostPort":9000,"containerPort":9000,"protocol":"tcp"}]}`,
		},
		{name: "bad protocol", pod: Pod{PortMappings: []PortMapping{{HostPort: 1, ContainerPort: 1, Protocol: "icmp"}}}, wantErr: true},
		{name: "bad port", pod: Pod{PortMappings: []PortMapping{{HostPort: 70000, ContainerPort: 1}}}, wantErr: true},
		{
			name: "bandwidth and cgroup",
			pod: Pod{Annotations: map[string]string{IngressBandwidthAnnotation: "10M", EgressBandwidthAnnotation: "1Mi", "other": "x"},
				CgroupParent: "/kubepods/pod1"},
			want: `{"bandwidth":{"ingressRate":10000000,"ingressBurst":4294967295,"egressRate":1048576,"egressBurst":4294967295},` +
				`"cgroupPath":"/kubepods/pod1",` +
				`"io.kubernetes.cri.pod-annotations":{"kubernetes.io/egress-bandwidth":"1Mi","kubernetes.io/ingress-bandwidth":"10M","other":"x"}}`,
		},
		{name: "only egress", pod: Pod{Annotations: map[string]string{EgressBandwidthAnnotation: "1M"}},
			want: `{"bandwidth":{"egressRate":1000000,"egressBurst":4294967295},` +
				`"io.kubernetes.cri.pod-annotations":{"kubernetes.io/egress-bandwidth":"1M"}}`},
		{name: "dns", pod: Pod{DNS: &DNS{Servers: []string{"10.96.0.10"}, Searches: []string{"ns.svc.cluster.local", "svc.cluster.local"}, Options: []string{"ndots:5"}}},
			want: `{"dns":{"servers":["10.96.0.10"],"searches":["ns.svc.cluster.local","svc.cluster.local"],"options":["ndots:5"]}}`},
		{name: "empty dns config still says so", pod: Pod{DNS: &DNS{}}, want: `{"dns":{}}`},
		{name: "bandwidth too small", pod: Pod{Annotations: map[string]string{IngressBandwidthAnnotation: "10"}}, wantErr: true},
		{name: "bandwidth too large", pod: Pod{Annotations: map[string]string{IngressBandwidthAnnotation: "2P"}}, wantErr: true},
		{name: "bandwidth garbage", pod: Pod{Annotations: map[string]string{EgressBandwidthAnnotation: "fast"}}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := capabilityArgs(tt.pod)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalidPod) {
					t.Fatalf("error = %v, want ErrInvalidPod", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(got)
			if string(b) != tt.want {
				t.Errorf("got  %s\nwant %s", b, tt.want)
			}
		})
	}
	if math.MaxUint32 != 4294967295 {
		t.Fatal("burst constant changed")
	}
}

func TestCNIArgs(t *testing.T) {
	got := cniArgs(Pod{ID: "abc", Name: "web", Namespace: "default", UID: "u-1"})
	want := [][2]string{
		{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", "default"}, {"K8S_POD_NAME", "web"},
		{"K8S_POD_INFRA_CONTAINER_ID", "abc"}, {"K8S_POD_UID", "u-1"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("arg %d = %v, want %v", i, got[i], want[i])
		}
	}
}
