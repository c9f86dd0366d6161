//! The pool-method spelling of the repository that hooks calls today: each method is a
//! repository function on the pool (or, where it writes, in a transaction of its own). Kept
//! until hooks calls the functions of [`rooms`], [`streams`] and [`users`] directly; new code
//! uses those.

use super::rooms::{self, NewRoom, Room};
use super::streams::{self, NewStream, StartOutcome, Stream};
use super::{users, Conn, Database, DbError};

impl Database {
    /// [`rooms::create`] on the pool.
    pub async fn create_room(&self, room: &NewRoom<'_>, now_ms: i64) -> Result<i64, DbError> {
        rooms::create(self, room, now_ms).await
    }

    /// [`rooms::get`] on the pool.
    pub async fn room(&self, id: i64) -> Result<Option<Room>, DbError> {
        rooms::get(self, id).await
    }

    /// [`rooms::set_disabled`] on the pool.
    pub async fn set_room_disabled(&self, id: i64, disabled: bool) -> Result<bool, DbError> {
        rooms::set_disabled(self, id, disabled).await
    }

    /// [`rooms::set_stream_key`] on the pool.
    pub async fn set_stream_key(
        &self,
        id: i64,
        stream_key: &str,
        expires_at: Option<i64>,
    ) -> Result<bool, DbError> {
        rooms::set_stream_key(self, id, stream_key, expires_at).await
    }

    /// [`rooms::set_viewers_count`] on the pool.
    pub async fn set_viewers_count(&self, id: i64, viewers: i64) -> Result<(), DbError> {
        rooms::set_viewers_count(self, id, viewers).await
    }
}

impl Conn {
    /// [`rooms::get`] on this connection.
    pub async fn room(&mut self, id: i64) -> Result<Option<Room>, DbError> {
        rooms::get(self, id).await
    }
}

impl Database {
    /// [`streams::start`] in a transaction of its own, committed unless refused.
    pub async fn start_stream(
        &self,
        new: &NewStream<'_>,
        now_ms: i64,
    ) -> Result<StartOutcome, DbError> {
        let outcome = self.start_stream_unless(new, now_ms, || false).await?;
        Ok(outcome.unwrap_or(StartOutcome::Refused))
    }

    /// [`Database::start_stream`], rolled back instead of committed (returning `None`) if
    /// `given_up()` says so just before the commit. Superseded by [`streams::start`] in a [`Tx`](super::Tx) the
    /// caller commits or drops.
    pub async fn start_stream_unless(
        &self,
        new: &NewStream<'_>,
        now_ms: i64,
        given_up: impl Fn() -> bool,
    ) -> Result<Option<StartOutcome>, DbError> {
        self.acquire()
            .await?
            .start_stream_unless(new, now_ms, given_up)
            .await
    }

    /// [`streams::stop`] in a transaction of its own.
    pub async fn stop_stream(
        &self,
        room_id: i64,
        server_id: &str,
        client_id: Option<&str>,
        now_ms: i64,
    ) -> Result<Option<Stream>, DbError> {
        let mut tx = self.begin().await?;
        let stopped = streams::stop(&mut tx, room_id, server_id, client_id, now_ms).await?;
        tx.commit().await?;
        Ok(stopped)
    }

    /// [`streams::stop_unregistered`] in a transaction of its own.
    pub async fn stop_unregistered_stream(
        &self,
        room_id: i64,
        server_id: &str,
        schema: Option<&str>,
        hook_index: Option<i64>,
        now_ms: i64,
    ) -> Result<Option<Stream>, DbError> {
        let mut tx = self.begin().await?;
        let stopped =
            streams::stop_unregistered(&mut tx, room_id, server_id, schema, hook_index, now_ms)
                .await?;
        tx.commit().await?;
        Ok(stopped)
    }

    /// [`streams::close`] in a transaction of its own.
    pub async fn close_stream(&self, id: i64, now_ms: i64) -> Result<Option<Stream>, DbError> {
        let mut tx = self.begin().await?;
        let closed = streams::close(&mut tx, id, now_ms).await?;
        tx.commit().await?;
        Ok(closed)
    }

    /// [`streams::open`] on the pool.
    pub async fn open_stream(&self, room_id: i64) -> Result<Option<Stream>, DbError> {
        streams::open(self, room_id).await
    }

    /// [`streams::open_all`] on the pool.
    pub async fn open_streams(&self, limit: u32) -> Result<Vec<Stream>, DbError> {
        streams::open_all(self, limit).await
    }

    /// [`streams::of_room`] on the pool.
    pub async fn streams_of_room(&self, room_id: i64) -> Result<Vec<Stream>, DbError> {
        streams::of_room(self, room_id).await
    }

    /// [`streams::open_of_server`] on the pool.
    pub async fn open_streams_of_server(&self, server_id: &str) -> Result<Vec<Stream>, DbError> {
        streams::open_of_server(self, server_id).await
    }

    /// [`streams::open_of_other_service`] on the pool.
    pub async fn open_streams_of_other_service(
        &self,
        server_id: &str,
        service_id: &str,
    ) -> Result<Vec<Stream>, DbError> {
        streams::open_of_other_service(self, server_id, service_id).await
    }

    /// [`streams::latest`] on the pool.
    pub async fn latest_stream(
        &self,
        room_id: i64,
        server_id: &str,
        client_id: Option<&str>,
    ) -> Result<Option<Stream>, DbError> {
        streams::latest(self, room_id, server_id, client_id).await
    }

    /// [`streams::set_record_url`] on the pool.
    pub async fn set_record_url(&self, stream_id: i64, url: &str) -> Result<(), DbError> {
        streams::set_record_url(self, stream_id, url).await
    }
}

impl Conn {
    /// [`Database::start_stream_unless`] on this connection: [`streams::start`] in a transaction
    /// committed unless refused or `given_up()`.
    pub async fn start_stream_unless(
        &mut self,
        new: &NewStream<'_>,
        now_ms: i64,
        given_up: impl Fn() -> bool,
    ) -> Result<Option<StartOutcome>, DbError> {
        let mut tx = self.begin().await?;
        match streams::start(&mut tx, new, now_ms).await? {
            StartOutcome::Started(id) => {
                if given_up() {
                    tx.rollback().await?;
                    return Ok(None);
                }
                tx.commit().await?;
                Ok(Some(StartOutcome::Started(id)))
            }
            StartOutcome::Refused => {
                tx.rollback().await?;
                Ok(Some(StartOutcome::Refused))
            }
        }
    }
}

impl Database {
    /// Creates a user and returns its id ([`users::create`] on the pool).
    pub async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        role: &str,
        now_ms: i64,
    ) -> Result<i64, DbError> {
        users::create(self, username, password_hash, role, now_ms).await
    }
}
