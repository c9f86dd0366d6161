//! Operator commands on a database (by default the one `livegate up` keeps in its data
//! directory): `migrate`, `user create`, `room create|list|rotate-key`.

use livegate_api::auth::password::Passwords;
use livegate_api::auth::{random_token, Role};
use livegate_api::config::AuthConfig;
use livegate_core::db::{rooms, users, Database, DbConfig, NewRoom};
use livegate_core::{unix_now_ms, Secret};

use crate::data::DataDir;

/// Why an operator command failed.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The data directory.
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// The database.
    #[error("database: {0}")]
    Db(#[from] livegate_core::db::DbError),
    /// What was asked for is wrong.
    #[error("{0}")]
    Refused(String),
}

/// Opens (and migrates) `url`, or the data directory's SQLite file.
pub async fn open(url: Option<&str>, data_dir: &std::path::Path) -> Result<Database, OpsError> {
    let url = match url {
        Some(url) => url.to_owned(),
        None => format!("sqlite:{}", DataDir::open(data_dir)?.database().display()),
    };
    let db = Database::connect(&DbConfig {
        url: Secret::new(url),
        ..DbConfig::default()
    })
    .await?;
    db.migrate().await?;
    Ok(db)
}

/// Creates an account; the password is hashed as the API hashes it (its default settings).
pub async fn create_user(
    db: &Database,
    username: &str,
    password: &str,
    role: &str,
) -> Result<i64, OpsError> {
    livegate_api::validate::username(username).map_err(OpsError::Refused)?;
    livegate_api::validate::password(password).map_err(OpsError::Refused)?;
    let role = match role {
        "admin" => Role::Admin,
        "streamer" => Role::Streamer,
        "viewer" => Role::Viewer,
        other => {
            return Err(OpsError::Refused(format!(
                "role: `{other}` is not admin, streamer or viewer"
            )))
        }
    };
    let passwords =
        Passwords::new(&AuthConfig::default()).map_err(|err| OpsError::Refused(err.to_string()))?;
    let hash = passwords
        .hash(password.to_owned())
        .await
        .map_err(|err| OpsError::Refused(err.to_string()))?;
    match users::create(db, username, &hash, role.as_str(), unix_now_ms()).await {
        Ok(id) => Ok(id),
        Err(err) if users::is_duplicate(&err) => Err(OpsError::Refused(format!(
            "username: `{username}` is taken"
        ))),
        Err(err) => Err(err.into()),
    }
}

/// A room as the commands print it.
#[derive(Debug, Clone)]
pub struct RoomLine {
    /// Its id.
    pub id: i64,
    /// Its owner.
    pub owner_id: i64,
    /// Its title.
    pub title: String,
    /// Whether a publisher is on.
    pub is_live: bool,
    /// The stream key (shown to the operator only).
    pub stream_key: String,
}

/// Creates a room for user `owner_id` with a new stream key.
pub async fn create_room(db: &Database, owner_id: i64, title: &str) -> Result<RoomLine, OpsError> {
    let stream_key = random_token(32);
    let id = rooms::create(
        db,
        &NewRoom {
            owner_id,
            title,
            stream_key: &stream_key,
            stream_key_expires_at: None,
            publish_allow_cidrs: None,
        },
        unix_now_ms(),
    )
    .await
    .map_err(|err| match err {
        err if users::is_duplicate(&err) => {
            OpsError::Refused("the stream key collided; run it again".to_owned())
        }
        err => OpsError::Db(err),
    })?;
    Ok(RoomLine {
        id,
        owner_id,
        title: title.to_owned(),
        is_live: false,
        stream_key,
    })
}

/// Enabled rooms, live first.
pub async fn list_rooms(db: &Database, limit: u32) -> Result<Vec<RoomLine>, OpsError> {
    Ok(rooms::list(db, None, None, limit)
        .await?
        .into_iter()
        .map(|room| RoomLine {
            id: room.id,
            owner_id: room.owner_id,
            title: room.title,
            is_live: room.is_live,
            stream_key: room.stream_key,
        })
        .collect())
}

/// Gives room `id` a new stream key. A publisher live on the old key keeps streaming until it
/// reconnects (the API's rotate endpoint also kicks it and revokes viewers' tokens).
pub async fn rotate_key(db: &Database, id: i64) -> Result<String, OpsError> {
    let key = random_token(32);
    let mut tx = db.begin().await?;
    if rooms::lock(&mut tx, id).await?.is_none() {
        return Err(OpsError::Refused(format!("room {id} does not exist")));
    }
    rooms::set_stream_key(&mut tx, id, &key, None).await?;
    tx.commit().await?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn users_and_rooms_from_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(None, dir.path()).await.unwrap();
        let owner = create_user(&db, "operator", "a long enough password", "streamer")
            .await
            .unwrap();
        assert!(matches!(
            create_user(&db, "operator", "a long enough password", "streamer").await,
            Err(OpsError::Refused(message)) if message.contains("taken")
        ));
        assert!(matches!(
            create_user(&db, "other", "a long enough password", "root").await,
            Err(OpsError::Refused(message)) if message.starts_with("role")
        ));
        let room = create_room(&db, owner, "Launch").await.unwrap();
        let listed = list_rooms(&db, 10).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].stream_key, room.stream_key);
        let rotated = rotate_key(&db, room.id).await.unwrap();
        assert_ne!(rotated, room.stream_key);
        assert_eq!(list_rooms(&db, 10).await.unwrap()[0].stream_key, rotated);
        assert!(rotate_key(&db, room.id + 1).await.is_err());
    }
}
