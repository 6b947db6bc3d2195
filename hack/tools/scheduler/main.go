// Command kube-scheduler-sharewarden is kube-scheduler (k8s.io/kubernetes, pinned in this module's
// go.mod, the version of hack/tools/k8s) with ShareWarden's scheduling-framework plugin linked
// in (extender/plugin): a profile enables it by the name ShareWarden instead of calling the HTTP
// extender. It takes kube-scheduler's flags.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"

	"github.com/sharewarden/sharewarden/extender/plugin"
)

func main() {
	os.Exit(cli.Run(app.NewSchedulerCommand(app.WithPlugin(plugin.PluginName, plugin.NewPlugin))))
}
