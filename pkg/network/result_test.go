package network

import (
	"slices"
	"testing"

	"github.com/containernetworking/cni/pkg/types/create"
)

func TestNewResult(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		want    []string
		wantErr bool
	}{
		{
			name: "bridge 1.0.0, host side addresses skipped, v4 first",
			raw: `{"cniVersion":"1.0.0","interfaces":[{"name":"psb1"},{"name":"veth1"},{"name":"eth0","sandbox":"/run/ns/x"}],
			"ips":[{"address":"fd00::5/64","interface":2},{"address":"10.251.1.1/24","interface":0},{"address":"10.251.1.5/24","interface":2}]}`,
			want: []string{"10.251.1.5", "fd00::5"},
		},
		{
			name: "0.4.0 ipam-only result has no interfaces",
			raw:  `{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.251.2.7/24"}]}`,
			want: []string{"10.251.2.7"},
		},
		{
			name: "0.3.1 with loopback from a chained loopback plugin",
			raw: `{"cniVersion":"0.3.1","interfaces":[{"name":"lo","sandbox":"/x"},{"name":"eth0","sandbox":"/x"}],
			"ips":[{"version":"4","address":"127.0.0.1/8","interface":0},{"version":"4","address":"10.251.3.9/24","interface":1}]}`,
			want: []string{"10.251.3.9"},
		},
		{
			name:    "no pod address",
			raw:     `{"cniVersion":"1.0.0","interfaces":[{"name":"psb1"}],"ips":[{"address":"10.251.1.1/24","interface":0}]}`,
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := create.CreateFromBytes([]byte(tt.raw))
			if err != nil {
				t.Fatal(err)
			}
			got, err := newResult("net", res)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("want error, got %+v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got.IPs, tt.want) || got.Interface != "eth0" || got.Network != "net" || len(got.Raw) == 0 {
				t.Errorf("got %+v, want IPs %v", got, tt.want)
			}
		})
	}
}
