//! Messages between replicas on PostgreSQL: `LISTEN` on a channel (the sending side is
//! [`Store::notify`](super::Store::notify)).

use super::StoreError;

/// A connection listening on one channel.
pub struct ChannelListener {
    inner: sqlx::postgres::PgListener,
}

impl ChannelListener {
    /// Connects to `url` and listens on `channel`.
    pub async fn open(url: &str, channel: &str) -> Result<Self, StoreError> {
        let mut inner = sqlx::postgres::PgListener::connect(url).await?;
        inner.listen(channel).await?;
        Ok(Self { inner })
    }

    /// The next message's payload; `Ok(None)` when the connection was lost: the next
    /// call reconnects, and what was sent meanwhile is gone.
    pub async fn next(&mut self) -> Result<Option<String>, StoreError> {
        Ok(self
            .inner
            .try_recv()
            .await?
            .map(|n| n.payload().to_string()))
    }
}
