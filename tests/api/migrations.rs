//! Schema changes keep what a running deployment holds: each migration that reshapes data is
//! applied to a database the schema before it filled, on both databases.

use std::str::FromStr;

use gemchat::jobs::queue::{JobId, NewJob};
use gemchat::replies::model::ReplyJob;
use gemchat::storage::Store;
use uuid::Uuid;

use crate::backend_tests;
use crate::harness::{Backend, TestDb, reply_of};

backend_tests!(
    replies_queued_before_the_generic_job_queue_still_run_in_order,
    a_linear_conversation_becomes_a_path_and_reads_back_the_same,
);

/// Runs each statement, then closes the pool.
async fn run_all<DB: sqlx::Database>(pool: &sqlx::Pool<DB>, statements: &[String])
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
{
    for statement in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement.as_str()))
            .execute(pool)
            .await
            .expect(statement);
    }
    pool.close().await;
}

/// Applies the migrations up to `version` and runs `statements` on the result.
async fn fill_schema_up_to(backend: Backend, url: &str, version: i64, statements: &[String]) {
    match backend {
        Backend::Sqlite => {
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)
                .expect("url")
                .create_if_missing(true);
            if let Some(dir) = options.get_filename().parent() {
                std::fs::create_dir_all(dir).expect("the database folder");
            }
            let pool = sqlx::SqlitePool::connect_with(options).await.expect("open");
            let migrator = sqlx::migrate!("./migrations/sqlite");
            migrator.run_to(version, &pool).await.expect("migrate");
            run_all(&pool, statements).await;
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(url).await.expect("connect");
            let migrator = sqlx::migrate!("./migrations/postgres");
            migrator.run_to(version, &pool).await.expect("migrate");
            run_all(&pool, statements).await;
        }
    }
}

async fn replies_queued_before_the_generic_job_queue_still_run_in_order(backend: Backend) {
    let db = TestDb::create(backend).await;
    let (user, room, reply, job) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );
    let now = crate::storage::now();
    // Literals as each database stores them.
    let (id, at): (fn(Uuid) -> String, String) = match backend {
        Backend::Sqlite => (
            |id| format!("X'{}'", id.simple()),
            now.timestamp_micros().to_string(),
        ),
        Backend::Postgres => (|id| format!("'{id}'"), format!("'{}'", now.to_rfc3339())),
    };
    let (user_id, room_id, reply_id) = (id(user), id(room), id(reply));
    let before = [
        format!(
            "INSERT INTO users (id, mobile_number, created_at, updated_at) \
             VALUES ({user_id}, '+919800000001', {at}, {at})"
        ),
        format!(
            "INSERT INTO chatrooms (id, user_id, name, created_at, updated_at, activity_at) \
             VALUES ({room_id}, {user_id}, 'old', {at}, {at}, {at})"
        ),
        format!(
            "INSERT INTO messages (id, chatroom_id, user_id, role, content, status, created_at, \
             updated_at) VALUES ({reply_id}, {room_id}, {user_id}, 'model', '', 'pending', {at}, {at})"
        ),
        format!(
            "INSERT INTO jobs (id, reply_id, chatroom_id, user_id, attempts, run_at, created_at) \
             VALUES ({}, {reply_id}, {room_id}, {user_id}, 0, {at}, {at})",
            id(job)
        ),
    ];
    fill_schema_up_to(backend, &db.url, 4, &before).await;

    let store = Store::connect(&db.url, true)
        .await
        .expect("migrate the rest");
    // A job queued now in the same chatroom's lane waits behind the migrated one.
    let later = NewJob {
        lane: Some(format!("chatroom:{room}")),
        ..NewJob::new("probe", &(), now)
    };
    store.jobs.enqueue(&later).await.expect("enqueue");
    let lease = std::time::Duration::from_secs(60);
    let claimed = store.jobs.claim(now, lease, 10).await.expect("claim");
    assert_eq!(claimed.len(), 1, "one job per lane: {claimed:?}");
    assert_eq!(claimed[0].id, JobId(job));
    assert_eq!(claimed[0].kind, "reply");
    assert_eq!(
        reply_of(&claimed[0]),
        ReplyJob {
            reply_id: gemchat::messages::model::MessageId(reply),
            chatroom_id: gemchat::chatrooms::model::ChatroomId(room),
            user_id: gemchat::users::model::UserId(user),
        }
    );
    assert!(store.jobs.finish(&claimed[0]).await.expect("finish"));
    let next = store.jobs.claim(now, lease, 10).await.expect("claim");
    assert_eq!(
        next.iter().map(|j| j.id).collect::<Vec<_>>(),
        [later.id],
        "the lane's next job"
    );
}

async fn a_linear_conversation_becomes_a_path_and_reads_back_the_same(backend: Backend) {
    let db = TestDb::create(backend).await;
    let (user, room) = (Uuid::now_v7(), Uuid::now_v7());
    let ids: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
    let now = crate::storage::now();
    let (id, at): (fn(Uuid) -> String, String) = match backend {
        Backend::Sqlite => (
            |id| format!("X'{}'", id.simple()),
            now.timestamp_micros().to_string(),
        ),
        Backend::Postgres => (|id| format!("'{id}'"), format!("'{}'", now.to_rfc3339())),
    };
    let (user_id, room_id) = (id(user), id(room));
    let mut before = vec![
        format!(
            "INSERT INTO users (id, mobile_number, created_at, updated_at) \
             VALUES ({user_id}, '+919800000002', {at}, {at})"
        ),
        format!(
            "INSERT INTO chatrooms (id, user_id, name, created_at, updated_at, activity_at) \
             VALUES ({room_id}, {user_id}, 'linear', {at}, {at}, {at})"
        ),
    ];
    let rows = [
        ("user", "What is a saguaro?", "completed"),
        ("model", "A tall cactus of the Sonoran desert.", "completed"),
        ("user", "Something refused", "completed"),
        ("model", "", "failed"),
    ];
    for (message, (role, content, status)) in ids.iter().zip(rows) {
        before.push(format!(
            "INSERT INTO messages (id, chatroom_id, user_id, role, content, status, created_at, \
             updated_at) VALUES ({}, {room_id}, {user_id}, '{role}', '{content}', '{status}', \
             {at}, {at})",
            id(*message)
        ));
    }
    fill_schema_up_to(backend, &db.url, 5, &before).await;

    let store = Store::connect(&db.url, true)
        .await
        .expect("migrate the rest");
    let room = gemchat::chatrooms::model::ChatroomId(room);
    let mut page = store.messages.page(room, None, 10).await.expect("page");
    page.reverse();
    let read: Vec<(Uuid, &str, &str)> = page
        .iter()
        .map(|m| (m.id.0, m.content.as_str(), m.status.as_str()))
        .collect();
    let expected: Vec<(Uuid, &str, &str)> = ids
        .iter()
        .zip(rows)
        .map(|(id, (_, content, status))| (*id, content, status))
        .collect();
    assert_eq!(read, expected, "every message, in order, unchanged");
    let parents: Vec<Option<Uuid>> = page.iter().map(|m| m.parent_id.map(|p| p.0)).collect();
    assert_eq!(parents, [None, Some(ids[0]), Some(ids[1]), Some(ids[2])]);
    // The full-text index still finds what was written before the migration.
    let query = gemchat::messages::search::SearchQuery::parse("sonoran").expect("a query");
    let hits = store
        .messages
        .search(gemchat::users::model::UserId(user), &query, 10)
        .await
        .expect("search");
    assert_eq!(
        hits.iter().map(|h| h.message.id.0).collect::<Vec<_>>(),
        [ids[1]]
    );
}
