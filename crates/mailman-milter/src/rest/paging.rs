//! Mailman's collections (`entries`, `total_size`), read page by page with
//! a bounded number of pages.

use serde_json::Value;

use super::RestError;
use super::client::Api;

/// Entries asked for per page of a collection.
const PAGE_SIZE: usize = 500;
/// Pages read of one collection at most (so 100 000 entries).
const MAX_PAGES: usize = 200;

impl Api {
    /// All entries of a collection, read page by page.
    pub(super) async fn collection(&self, path: &str) -> Result<Vec<Value>, RestError> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut out = Vec::new();
        for page in 1..=MAX_PAGES {
            let p = format!("{path}{sep}count={PAGE_SIZE}&page={page}");
            let v = self.get(&p).await?;
            let garbage = |message: &str| RestError::Garbage {
                url: format!("{}{p}", self.base),
                message: message.to_owned(),
            };
            let total = v
                .get("total_size")
                .and_then(Value::as_u64)
                .ok_or_else(|| garbage("no total_size"))?;
            // Mailman leaves `entries` out of an empty page.
            let entries = match v.get("entries") {
                None => Vec::new(),
                Some(Value::Array(a)) => a.clone(),
                Some(_) => return Err(garbage("entries is not an array")),
            };
            let n = entries.len();
            out.extend(entries);
            if n == 0 || out.len() as u64 >= total {
                return Ok(out);
            }
        }
        Err(RestError::Garbage {
            url: format!("{}{path}", self.base),
            message: format!("more than {MAX_PAGES} pages of {PAGE_SIZE}"),
        })
    }
}
