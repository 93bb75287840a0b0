//! Per-service source `allow` / `deny` lists (`LB_ACL`, an LPM trie), checked for a new
//! flow before its rate-limit buckets: a refused source costs one trie lookup and nothing
//! downstream. The daemon leaves out of the trie every allow prefix a deny prefix covers,
//! so the longest match alone decides and deny wins over allow.

use aya_ebpf::maps::lpm_trie::Key;
use lb_common::{
    consts::{ACL_DENY, ACL_HAS_ALLOW, FAMILY_V6},
    maps::{AclData, FlowKey, VipInfo},
};

use crate::maps::{LB_ACL, LB_ACL_DENIED};

/// May a new flow from this client start? Refusals are counted per service.
#[inline(never)]
pub fn admit(key: &FlowKey, vip: &VipInfo) -> bool {
    if vip.acl == 0 {
        return true;
    }
    let lookup = Key::new(AclData::prefix_len(FAMILY_V6, 128), AclData::new(vip.service_id, &key.src, key.family));
    let ok = match LB_ACL.get(&lookup) {
        Some(&verdict) => verdict != ACL_DENY,
        // No prefix matches: refused only when the service lists whom it allows.
        None => vip.acl & ACL_HAS_ALLOW == 0,
    };
    if !ok {
        if let Some(c) = LB_ACL_DENIED.get_ptr_mut(vip.service_id) {
            // SAFETY: per-CPU slot, no other writer on this CPU while the program runs.
            unsafe { *c += 1 };
        }
    }
    ok
}
