// Command etcd is etcd's server, built from its Go module so that the
// Kubernetes provider tests need no download site.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
