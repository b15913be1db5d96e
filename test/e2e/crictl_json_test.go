package e2e

import (
	"sort"

	"github.com/pod-shim/pod-shim/test/harness"
)

// Shapes of crictl's -o json output (protobuf JSON: camelCase, enums as names).

type podStatusJSON struct {
	Status struct {
		ID      string `json:"id"`
		State   string `json:"state"`
		Network struct {
			IP string `json:"ip"`
		} `json:"network"`
	} `json:"status"`
}

type containerStatusJSON = harness.CrictlContainerStatus

type podListJSON struct {
	Items []struct {
		ID    string `json:"id"`
		State string `json:"state"`
	} `json:"items"`
}

type containerListJSON struct {
	Containers []struct {
		ID           string `json:"id"`
		PodSandboxID string `json:"podSandboxId"`
		State        string `json:"state"`
	} `json:"containers"`
}

type imageJSON struct {
	ID          string   `json:"id"`
	RepoTags    []string `json:"repoTags"`
	RepoDigests []string `json:"repoDigests"`
}

type imageListJSON struct {
	Images []imageJSON `json:"images"`
}

type imageStatusJSON struct {
	Status imageJSON `json:"status"`
}

type infoJSON struct {
	Status struct {
		Conditions []conditionJSON `json:"conditions"`
	} `json:"status"`
}

type conditionJSON struct {
	Type    string `json:"type"`
	Status  bool   `json:"status"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// snapshot is "id=STATE" for every pod and container crictl lists, sorted.
func (d *daemon) snapshot() []string {
	d.T.Helper()
	var pods podListJSON
	d.CrictlJSON(&pods, "pods", "-o", "json")
	var ctrs containerListJSON
	d.CrictlJSON(&ctrs, "ps", "-a", "-o", "json")
	var out []string
	for _, p := range pods.Items {
		out = append(out, "pod "+p.ID+"="+p.State)
	}
	for _, c := range ctrs.Containers {
		out = append(out, "container "+c.ID+" in "+c.PodSandboxID+"="+c.State)
	}
	sort.Strings(out)
	return out
}
