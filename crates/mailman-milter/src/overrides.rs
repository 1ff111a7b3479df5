//! What the configuration adds to the list data: `refuse_hold` and
//! `reject_text`, for all lists and per list. Mailman's REST API knows
//! neither (they are the milter's own policy), and a lists file may leave
//! them out; the list data's own value always wins.

use std::collections::HashMap;
use std::sync::Arc;

use crate::backend::ListIndex;

/// `refuse_hold` and `reject_text` for one list, from the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListOverride {
    /// Refuse what Mailman would hold on this list.
    pub refuse_hold: Option<bool>,
    /// Refusal text for this list (`{list}` = posting address).
    pub reject_text: Option<String>,
}

/// The configured defaults and per-list values, applied to the list data
/// where it says nothing: the list data's own value wins, then the
/// per-list entry, then the default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOverrides {
    /// Refuse holds on lists that do not say.
    pub refuse_hold: bool,
    /// By normalised posting address.
    pub lists: HashMap<String, ListOverride>,
}

impl ListOverrides {
    /// Nothing to apply: lists keep their own values (unset `refuse_hold`
    /// reads as no).
    pub fn is_empty(&self) -> bool {
        !self.refuse_hold && self.lists.is_empty()
    }

    /// The per-list entries naming no list of `index`, sorted. They do
    /// nothing; most likely a typo, or a list that was removed.
    pub fn missing(&self, index: &ListIndex) -> Vec<&str> {
        let mut m: Vec<&str> = self
            .lists
            .keys()
            .filter(|a| !index.contains_key(*a))
            .map(String::as_str)
            .collect();
        m.sort_unstable();
        m
    }

    /// `index` with the values filled in.
    pub fn apply(&self, index: &ListIndex) -> ListIndex {
        index
            .iter()
            .map(|(address, policy)| {
                let mut p = (**policy).clone();
                // By the list's own address: an alias-domain key is the
                // same list.
                if let Some(o) = self.lists.get(&policy.address) {
                    p.refuse_hold = p.refuse_hold.or(o.refuse_hold);
                    if p.reject_text.is_none() {
                        p.reject_text.clone_from(&o.reject_text);
                    }
                }
                p.refuse_hold = Some(p.refuse_hold.unwrap_or(self.refuse_hold));
                (address.clone(), Arc::new(p))
            })
            .collect()
    }
}

/// The warning for a `[list_overrides."list"]` entry naming no known list.
pub fn missing_override(list: &str) -> String {
    format!("list_overrides.\"{list}\": no such list in the list data; the entry has no effect")
}
