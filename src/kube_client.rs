//! Building a Kubernetes client from the command line's choices.

use std::path::Path;

use anyhow::Context as _;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// A client from, in order: the explicit `--kubeconfig` file; in-cluster service-account
/// credentials (when running in a pod); `$KUBECONFIG` or `~/.kube/config`.
pub(crate) async fn client(kubeconfig: Option<&Path>) -> anyhow::Result<kube::Client> {
    let config = if let Some(path) = kubeconfig {
        let kc = Kubeconfig::read_from(path).with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
        kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .with_context(|| format!("kubeconfig {}", path.display()))?
    } else if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        kube::Config::incluster().context("in-cluster credentials")?
    } else {
        kube::Config::from_kubeconfig(&KubeConfigOptions::default())
            .await
            .context("no --kubeconfig, not in a cluster, and no usable $KUBECONFIG or ~/.kube/config")?
    };
    kube::Client::try_from(config).context("cannot build the Kubernetes client")
}
