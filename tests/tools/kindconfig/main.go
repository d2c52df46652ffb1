// Decodes a kind config strictly into kind's own v1alpha4 types (unknown fields fail).
package main

import (
	"fmt"
	"os"

	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/yaml"
)

func main() {
	data, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var cfg v1alpha4.Cluster
	if err := yaml.UnmarshalStrict(data, &cfg); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
	if cfg.Kind != "Cluster" || cfg.APIVersion != "kind.x-k8s.io/v1alpha4" {
		fmt.Fprintf(os.Stderr, "%s: kind %q apiVersion %q\n", os.Args[1], cfg.Kind, cfg.APIVersion)
		os.Exit(1)
	}
	fmt.Printf("ok: disableDefaultCNI=%v podSubnet=%s apiServerAddress=%s apiServerPort=%d patches=%d\n",
		cfg.Networking.DisableDefaultCNI, cfg.Networking.PodSubnet, cfg.Networking.APIServerAddress,
		cfg.Networking.APIServerPort, len(cfg.KubeadmConfigPatches))
}
