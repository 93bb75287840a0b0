//! One reconcile as a transaction: the desired state is planned (ids given out) and written.
//! Should either fail, the ids are put back as they were, as the writer puts the maps back:
//! the next reconcile starts from the state that is live, and a flow keeps its backend id.
use anyhow::Result;
use lb_common::maps::GlobalConfig;
use lb_config::desired::Desired;

use crate::plan::{plan, HostFacts, Ids, Plan};
use crate::store::MapStore;
use crate::writer::Writer;

/// Plan `desired` and write it; the plan written is returned.
pub fn reconcile<S: MapStore>(
    writer: &mut Writer<S>,
    ids: &mut Ids,
    desired: &Desired,
    global: GlobalConfig,
    facts: &HostFacts,
) -> Result<Plan> {
    let before = ids.clone();
    let written = plan(desired, global, facts, ids).and_then(|p| writer.apply(&p).map(|()| p));
    if written.is_err() {
        *ids = before;
    }
    written
}
