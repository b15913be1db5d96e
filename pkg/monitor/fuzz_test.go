package monitor

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// FuzzDecodeRequest feeds the monitor's request decoder arbitrary bytes,
// as anything that reaches its socket may send. It must never panic; what
// it accepts must be stable (decode, encode, decode gives the same value)
// and carry only ids that are safe as file names.
func FuzzDecodeRequest(f *testing.F) {
	for _, seed := range []string{
		`{"method":"Ping"}`,
		`{"method":"Shutdown"}` + "\n",
		`{"method":"Create","params":{"ID":"c1","Bundle":"/b","LogPath":"/l","Start":true,"Cgroup":"/x"}}`,
		`{"method":"Start","params":{"id":"c1"}}`,
		`{"method":"Kill","params":{"id":"c1","signal":9,"all":true}}`,
		`{"method":"Exec","params":{"ContainerID":"c1","Process":{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0}},"Timeout":1000000000}}`,
		`{"method":"Resize","params":{"id":"c1","width":80,"height":24}}`,
		`{"method":"ReopenLog","params":{"id":"../../etc"}}`,
		`{"method":"ExecStream","params":{"ContainerID":"c1"}}`,
		`{"method":"Attach","params":{"ContainerID":"c1","Stdin":true}}`,
		`{"method":"Wait","params":null}`,
		`{"method":"Nope","params":{}}`,
		`{"method":"Create","params":{"ID":"a/b"}}`,
		`{"method":`,
		`[]`,
		``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := readRequest(bytes.NewReader(data))
		if err != nil {
			return
		}
		p, err := decodeParams(req.Method, req.Params)
		if err != nil || p == nil {
			return
		}
		for _, id := range idsOf(p) {
			if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/\x00") {
				t.Fatalf("accepted unsafe id %q in %s", id, req.Method)
			}
		}
		enc, err := json.Marshal(p)
		if err != nil {
			t.Fatalf("re-encode %T: %v", p, err)
		}
		p2, err := decodeParams(req.Method, enc)
		if err != nil {
			t.Fatalf("re-decode %s %s: %v", req.Method, enc, err)
		}
		enc2, _ := json.Marshal(p2)
		if !bytes.Equal(enc, enc2) || reflect.TypeOf(p) != reflect.TypeOf(p2) {
			t.Fatalf("unstable decode of %s:\n%s\n%s", req.Method, enc, enc2)
		}
	})
}

func idsOf(p any) []string {
	switch v := p.(type) {
	case *CreateRequest:
		return []string{v.ID}
	case *idParams:
		return []string{v.ID}
	case *killParams:
		return []string{v.ID}
	case *ExecRequest:
		return []string{v.ContainerID}
	case *resizeParams:
		return []string{v.ID}
	case *StreamExecRequest:
		return []string{v.ContainerID}
	case *AttachRequest:
		return []string{v.ContainerID}
	}
	return nil
}

func TestDecodeParams(t *testing.T) {
	for _, tt := range []struct {
		method, params string
		ok             bool
	}{
		{"Ping", ``, true},
		{"Start", `{"id":"abc"}`, true},
		{"Start", ``, false},
		{"Start", `{"id":"../x"}`, false},
		{"Start", `{"id":".."}`, false},
		{"Kill", `{"id":"a","signal":"x"}`, false},
		{"Create", `{"ID":"c","Bundle":"/b"}`, true},
		{"Create", `{"ID":""}`, false},
		{"Exec", `{"ContainerID":"c/d"}`, false},
		{"Frobnicate", `{}`, false},
	} {
		_, err := decodeParams(tt.method, json.RawMessage(tt.params))
		if (err == nil) != tt.ok {
			t.Errorf("decodeParams(%s, %s) = %v, want ok=%v", tt.method, tt.params, err, tt.ok)
		}
	}
	if _, err := readRequest(strings.NewReader(`{"params":{}}`)); err == nil {
		t.Error("request without a method accepted")
	}
	huge := `{"method":"Start","params":{"id":"` + strings.Repeat("a", maxRequest) + `"}}`
	if _, err := readRequest(strings.NewReader(huge)); err == nil {
		t.Error("request over maxRequest accepted")
	}
}
