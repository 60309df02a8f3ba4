//! Hot reload of the config file: polled by content hash; a changed, valid file replaces the
//! config, an invalid one is logged and ignored.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use arc_swap::ArcSwap;
use sha2::{Digest as _, Sha256};
use stowage_policy::Config;
use tokio::sync::watch;
use tracing::{info, warn};

use super::tasks::until_stopped;

/// Polls the config file; a changed, valid file replaces the config; an invalid one is
/// logged and ignored (the last good config stays in force).
pub(super) async fn watch_config(
    path: PathBuf,
    config: Arc<ArcSwap<Config>>,
    interval: Duration,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut last = file_hash(&path);
    let poll = async {
        let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(100)));
        loop {
            ticker.tick().await;
            let hash = file_hash(&path);
            if hash == last {
                continue;
            }
            match std::fs::read_to_string(&path)
                .map_err(anyhow::Error::from)
                .and_then(|text| Config::from_yaml(&text).map_err(anyhow::Error::from))
            {
                Ok(new) => {
                    config.store(Arc::new(new));
                    info!(path = %path.display(), "config reloaded");
                    last = hash;
                }
                Err(e) => warn!(path = %path.display(), "config change ignored, keeping the last good config: {e:#}"),
            }
        }
    };
    until_stopped(poll, stop).await
}

fn file_hash(path: &Path) -> Option<[u8; 32]> {
    std::fs::read(path).ok().map(|bytes| Sha256::digest(&bytes).into())
}
