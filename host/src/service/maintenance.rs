//! Offline table maintenance an admin asks for: compaction and vacuum of
//! every source's and group's table (`POST /v1/offline/compact`,
//! `wafer offline compact`). The flusher also compacts a table by itself
//! once flushes have left it many small files.

use super::{ServiceResult, Wafer};
use crate::store::Compaction;
use std::time::Duration;

/// Files superseded by a compaction are kept this long, so reads that
/// started on an older version of a table can still finish.
pub const RETENTION: Duration = Duration::from_secs(3600);

impl Wafer {
    pub async fn compact_offline(&self) -> ServiceResult<Vec<Compaction>> {
        let mut sources: Vec<String> = self.inner.sources.iter().map(|s| s.key().clone()).collect();
        let mut groups: Vec<String> = self.inner.groups.iter().map(|g| g.key().clone()).collect();
        sources.sort();
        groups.sort();
        Ok(self.offline().compact(&sources, &groups, RETENTION).await?)
    }
}
