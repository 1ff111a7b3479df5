//! Reading one list (or the site-wide data) from the API, for the lists
//! fetched lazily on their first RCPT: a few requests at once instead of
//! the whole list data.

use serde_json::Value;

use super::RestError;
use super::client::{Api, enc};
use super::snapshot::RawList;

/// One list's answers and whether some address has its own refusing
/// (reject or discard) or holding action there.
pub(super) type FetchedList = (RawList, bool, bool);

impl Api {
    /// `/domains` and the site-wide `/bans`, both at once.
    pub(super) async fn fetch_site(&self) -> Result<(Vec<Value>, Vec<Value>), RestError> {
        let (domains, bans) = tokio::join!(self.collection("/domains"), self.collection("/bans"));
        Ok((domains?, bans?))
    }

    /// The list whose posting address is `address` (a mail host's, not an
    /// alias domain's), or None if Mailman has no such list: the list
    /// resource first (Mailman accepts the posting address in place of the
    /// `list_id`), then its config, bans, header rules and the three
    /// moderation searches, all at once.
    pub(super) async fn fetch_list(&self, address: &str) -> Result<Option<FetchedList>, RestError> {
        let resource = match self.get(&format!("/lists/{}", enc(address))).await {
            Ok(r) => r,
            Err(RestError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let field = |name: &str| {
            resource
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_lowercase)
                .ok_or_else(|| RestError::Garbage {
                    url: format!("{}/lists/{}", self.base, enc(address)),
                    message: format!("a list without {name}"),
                })
        };
        let list_id = field("list_id")?;
        let fqdn = field("fqdn_listname")?;
        let id = enc(&list_id);
        let paths = [
            format!("/lists/{id}/config"),
            format!("/lists/{id}/bans"),
            format!("/lists/{id}/header-matches"),
        ];
        let (config, bans, header_matches, reject, discard, hold) = tokio::join!(
            self.get(&paths[0]),
            self.collection(&paths[1]),
            self.collection(&paths[2]),
            self.any_moderated(&list_id, "reject"),
            self.any_moderated(&list_id, "discard"),
            self.any_moderated(&list_id, "hold"),
        );
        // A 404 on any of these: deleted since the list resource was read.
        let gone = |e: &RestError| matches!(e, RestError::NotFound { .. });
        let (config, bans, header_matches) = match (config, bans, header_matches) {
            (Ok(c), Ok(b), Ok(h)) => (c, b, h),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) if gone(&e) => return Ok(None),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return Err(e),
        };
        let raw = RawList {
            address: fqdn,
            list_id,
            config,
            bans,
            header_matches,
            age: 0,
        };
        Ok(Some((raw, reject? || discard?, hold?)))
    }

    /// Whether some member or non-member of `list_id` has `action` as its
    /// own moderation action: one entry asked for, the total read.
    async fn any_moderated(&self, list_id: &str, action: &str) -> Result<bool, RestError> {
        let path = format!(
            "/members/find?list_id={}&moderation_action={action}&count=1&page=1",
            enc(list_id)
        );
        let v = self.get(&path).await?;
        v.get("total_size")
            .and_then(Value::as_u64)
            .map(|n| n > 0)
            .ok_or_else(|| RestError::Garbage {
                url: format!("{}{path}", self.base),
                message: "no total_size".into(),
            })
    }
}
