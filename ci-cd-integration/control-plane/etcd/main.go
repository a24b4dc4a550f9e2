// etcd for the local Kubernetes control plane the tests start: the release that
// kube-apiserver is built against, run through etcd's own command line.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
