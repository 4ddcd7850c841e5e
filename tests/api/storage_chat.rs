//! Repository contracts of chatrooms, messages, replies and the job queue, on both databases: what
//! keeps the one SQL code path honest where the dialects differ (the claim, the completion,
//! locks) and where the quota is taken and given back.

use chrono::Duration;
use gemchat::chatrooms::model::{Chatroom, ChatroomId};
use gemchat::jobs::queue::{ClaimedJob, JobId, NewJob};
use gemchat::messages::model::{Message, MessageError, MessageId, MessageStatus, ReplyMeta, Role};
use gemchat::messages::repo::{NewPrompt, PromptOutcome};
use gemchat::quota::model::QuotaPolicy;
use gemchat::storage::Store;
use gemchat::users::model::UserId;

use crate::backend_tests;
use crate::harness::{Backend, reply_of};
use crate::storage::{Fixture, fixture, new_user, now};

backend_tests!(
    a_room_has_at_most_one_claimed_job_and_replies_come_oldest_first,
    a_lapsed_lease_is_claimed_again_and_only_one_run_completes_the_reply,
    a_failed_reply_gives_its_prompt_back_once,
    concurrent_prompts_take_exactly_what_the_limit_leaves,
    retries_wait_for_their_time_and_releases_give_the_attempt_back,
    rooms_are_limited_per_user_and_deleting_one_refunds_its_queued_prompts,
    jobs_of_any_kind_run_one_at_a_time_per_lane_and_finish_once,
    a_job_committed_after_a_newer_one_of_its_lane_waits_for_it,
    an_interrupted_reply_is_pending_again_only_while_its_claim_holds,
);

const LEASE: std::time::Duration = std::time::Duration::from_secs(60);

async fn user_and_room(store: &Store) -> (UserId, ChatroomId) {
    let user = new_user();
    store.users.insert(&user).await.expect("insert user");
    let at = now();
    let room = Chatroom {
        id: ChatroomId(uuid::Uuid::now_v7()),
        user_id: user.id,
        name: "contract".into(),
        name_source: gemchat::chatrooms::model::NameSource::User,
        created_at: at,
        updated_at: at,
        last_message_at: None,
    };
    assert!(store.chatrooms.create(&room, 1000).await.expect("create"));
    (user.id, room.id)
}

/// A prompt, its pending reply and the reply's job, written the way `send` writes them.
fn prompt(user: UserId, room: ChatroomId, text: &str) -> NewPrompt {
    let at = now();
    let prompt = Message {
        id: MessageId::new(),
        chatroom_id: room,
        user_id: user,
        parent_id: None,
        versions: Vec::new(),
        attachments: Vec::new(),
        role: Role::User,
        content: text.into(),
        status: MessageStatus::Completed,
        error: None,
        quota_day: None,
        meta: ReplyMeta::default(),
        created_at: at,
        updated_at: at,
    };
    let reply = Message {
        id: MessageId::new(),
        parent_id: Some(prompt.id),
        role: Role::Model,
        content: String::new(),
        status: MessageStatus::Pending,
        quota_day: Some(at.date_naive()),
        ..prompt.clone()
    };
    NewPrompt {
        prompt,
        reply,
        job_id: JobId::new(),
        day: at.date_naive(),
        now: at,
    }
}

fn limited(limit: u32) -> QuotaPolicy {
    QuotaPolicy {
        basic: Some(limit),
        pro: None,
    }
}

async fn send(f: &Fixture, user: UserId, room: ChatroomId, text: &str) -> NewPrompt {
    let new = prompt(user, room, text);
    let outcome = f
        .store
        .messages
        .insert_prompt_with_reply_job(&new, &limited(100))
        .await
        .expect("insert");
    assert!(matches!(outcome, PromptOutcome::Accepted { .. }));
    new
}

/// Claims up to `max` due jobs at `at`.
async fn claim(
    f: &Fixture,
    at: chrono::DateTime<chrono::Utc>,
    lease: std::time::Duration,
    max: u32,
) -> Vec<ClaimedJob> {
    f.store.jobs.claim(at, lease, max).await.expect("claim")
}

async fn used_today(f: &Fixture, user: UserId) -> u32 {
    f.store
        .usage
        .used_on(user, now().date_naive())
        .await
        .expect("usage")
}

async fn a_room_has_at_most_one_claimed_job_and_replies_come_oldest_first(backend: Backend) {
    let f = fixture(backend).await;
    let (user, room) = user_and_room(&f.store).await;
    let first = send(&f, user, room, "first").await;
    let second = send(&f, user, room, "second").await;
    let (other_user, other_room) = user_and_room(&f.store).await;
    let other = send(&f, other_user, other_room, "elsewhere").await;

    let claimed = claim(&f, now(), LEASE, 10).await;
    let mut replies: Vec<MessageId> = claimed.iter().map(|j| reply_of(j).reply_id).collect();
    replies.sort();
    assert_eq!(
        replies,
        [first.reply.id, other.reply.id],
        "one job per room"
    );
    assert!(claimed.iter().all(|j| j.attempts == 1));
    assert!(
        claim(&f, now(), LEASE, 10).await.is_empty(),
        "the room's next job waits for the first"
    );
    let job = claimed
        .iter()
        .find(|j| reply_of(j).reply_id == first.reply.id)
        .expect("the first job");
    f.store
        .replies
        .mark_streaming(reply_of(job).reply_id, now())
        .await
        .expect("mark");
    let history = f
        .store
        .replies
        .path_above(&reply_of(job), 20)
        .await
        .expect("history");
    assert_eq!(history.len(), 1, "the prompt; not the pending reply");
    let meta = ReplyMeta {
        finish_reason: Some("STOP".into()),
        model_version: Some("model-x".into()),
        prompt_tokens: Some(11),
        output_tokens: Some(7),
        total_tokens: Some(18),
        thinking_tokens: Some(3),
        cached_tokens: Some(5),
    };
    let done = f
        .store
        .replies
        .complete(job, &reply_of(job), "the answer", &meta, now())
        .await
        .expect("complete")
        .expect("this run finished it")
        .message;
    assert_eq!(done.status, MessageStatus::Completed);
    assert_eq!(done.content, "the answer");
    assert_eq!(done.meta, meta);
    let next = claim(&f, now(), LEASE, 10).await;
    assert_eq!(
        next.iter()
            .map(|j| reply_of(j).reply_id)
            .collect::<Vec<_>>(),
        [second.reply.id]
    );
}

async fn a_lapsed_lease_is_claimed_again_and_only_one_run_completes_the_reply(backend: Backend) {
    let f = fixture(backend).await;
    let (user, room) = user_and_room(&f.store).await;
    let sent = send(&f, user, room, "slow").await;
    let at = now();
    let short = std::time::Duration::from_secs(2);
    let first = claim(&f, at, short, 1).await;
    let first = first.first().expect("claimed").clone();
    assert!(
        claim(&f, at + Duration::seconds(1), short, 1)
            .await
            .is_empty(),
        "the lease holds"
    );
    let again = claim(&f, at + Duration::seconds(3), LEASE, 1).await;
    let again = again
        .first()
        .expect("claimed again once the lease lapsed")
        .clone();
    assert_eq!(reply_of(&again).reply_id, sent.reply.id);
    assert_eq!(again.attempts, 2);
    assert_ne!(again.lock_token, first.lock_token);
    assert!(
        !f.store
            .jobs
            .renew(&first, at + Duration::seconds(60))
            .await
            .expect("renew"),
        "the first run's claim is gone"
    );
    let meta = ReplyMeta::default();
    let finished_at = at + Duration::seconds(4);
    let done = f
        .store
        .replies
        .complete(
            &again,
            &reply_of(&again),
            "from the second run",
            &meta,
            finished_at,
        )
        .await
        .expect("complete");
    assert!(done.is_some());
    let late = f
        .store
        .replies
        .complete(
            &first,
            &reply_of(&first),
            "from the first run",
            &meta,
            at + Duration::seconds(9),
        )
        .await
        .expect("complete");
    assert!(late.is_none(), "a late finish never overwrites");
    let bumped = f
        .store
        .chatrooms
        .find(user, room)
        .await
        .expect("find")
        .expect("the room");
    assert_eq!(
        bumped.last_message_at,
        Some(finished_at),
        "only the finish that stored the reply moves the room's activity"
    );
    assert!(
        claim(&f, at + Duration::seconds(600), LEASE, 1)
            .await
            .is_empty(),
        "the job is gone"
    );
    let stored = f
        .store
        .messages
        .find(user, room, sent.reply.id)
        .await
        .expect("find")
        .expect("the reply");
    assert_eq!(stored.content, "from the second run");
}

async fn a_failed_reply_gives_its_prompt_back_once(backend: Backend) {
    let f = fixture(backend).await;
    let (user, room) = user_and_room(&f.store).await;
    send(&f, user, room, "doomed").await;
    assert_eq!(used_today(&f, user).await, 1);
    let job = claim(&f, now(), LEASE, 1).await;
    let job = job.first().expect("claimed").clone();
    let error = MessageError {
        code: "blocked".into(),
        message: "no".into(),
    };
    let failed = f
        .store
        .replies
        .fail(&job, &reply_of(&job), &error, now())
        .await
        .expect("fail");
    let failed = failed.expect("this run failed it");
    assert_eq!(failed.status, MessageStatus::Failed);
    assert_eq!(failed.error, Some(error.clone()));
    assert_eq!(used_today(&f, user).await, 0);
    assert!(
        f.store
            .replies
            .fail(&job, &reply_of(&job), &error, now())
            .await
            .expect("fail")
            .is_none()
    );
    assert_eq!(used_today(&f, user).await, 0, "given back once");
    assert_eq!(f.store.jobs.counts(now()).await.expect("counts"), (0, 0));
}

async fn concurrent_prompts_take_exactly_what_the_limit_leaves(backend: Backend) {
    let f = fixture(backend).await;
    let (user, room) = user_and_room(&f.store).await;
    let policy = limited(3);
    let prompts: Vec<NewPrompt> = (0..8)
        .map(|i| prompt(user, room, &format!("p{i}")))
        .collect();
    let outcomes = futures::future::join_all(
        prompts
            .iter()
            .map(|p| f.store.messages.insert_prompt_with_reply_job(p, &policy)),
    )
    .await;
    let accepted = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(PromptOutcome::Accepted { .. })))
        .count();
    let refused = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(PromptOutcome::LimitReached { limit: 3, .. })))
        .count();
    assert_eq!((accepted, refused), (3, 5), "{outcomes:?}");
    assert_eq!(used_today(&f, user).await, 3);
    let zero = f
        .store
        .messages
        .insert_prompt_with_reply_job(&prompt(user, room, "none"), &limited(0))
        .await
        .expect("insert");
    assert!(matches!(zero, PromptOutcome::LimitReached { limit: 0, .. }));
    let stranger = f
        .store
        .messages
        .insert_prompt_with_reply_job(&prompt(UserId::new(), room, "x"), &limited(5))
        .await
        .expect("insert");
    assert_eq!(stranger, PromptOutcome::ChatroomNotFound);
}

async fn retries_wait_for_their_time_and_releases_give_the_attempt_back(backend: Backend) {
    let f = fixture(backend).await;
    let (user, room) = user_and_room(&f.store).await;
    send(&f, user, room, "flaky").await;
    let at = now();
    let job = claim(&f, at, LEASE, 1).await;
    let job = job.first().expect("claimed").clone();
    assert_eq!(f.store.jobs.counts(at).await.expect("counts"), (0, 1));
    let later = at + Duration::seconds(30);
    f.store
        .jobs
        .retry_later(&job, later, "unavailable: try again")
        .await
        .expect("retry");
    assert_eq!(f.store.jobs.next_run_at().await.expect("next"), Some(later));
    assert!(
        claim(&f, at, LEASE, 1).await.is_empty(),
        "not before its time"
    );
    let retried = claim(&f, later, LEASE, 1).await;
    let retried = retried.first().expect("claimed at its time").clone();
    assert_eq!(retried.attempts, 2);
    f.store
        .jobs
        .release(&retried, later)
        .await
        .expect("release");
    let released = claim(&f, later, LEASE, 1).await;
    assert_eq!(
        released.first().map(|j| j.attempts),
        Some(2),
        "a release does not count the attempt"
    );
}

async fn rooms_are_limited_per_user_and_deleting_one_refunds_its_queued_prompts(backend: Backend) {
    let f = fixture(backend).await;
    let (user, room) = user_and_room(&f.store).await;
    let at = now();
    let second = Chatroom {
        id: ChatroomId(uuid::Uuid::now_v7()),
        user_id: user,
        name: "second".into(),
        name_source: gemchat::chatrooms::model::NameSource::User,
        created_at: at,
        updated_at: at,
        last_message_at: None,
    };
    assert!(
        !f.store.chatrooms.create(&second, 1).await.expect("create"),
        "one room per user at most here"
    );
    send(&f, user, room, "queued one").await;
    send(&f, user, room, "queued two").await;
    assert_eq!(used_today(&f, user).await, 2);
    assert!(
        !f.store
            .chatrooms
            .delete(UserId::new(), room, chrono::Utc::now())
            .await
            .expect("delete")
    );
    assert!(
        f.store
            .chatrooms
            .delete(user, room, chrono::Utc::now())
            .await
            .expect("delete")
    );
    assert_eq!(used_today(&f, user).await, 0);
    assert!(claim(&f, now(), LEASE, 10).await.is_empty());
    assert!(f.store.chatrooms.list(user).await.expect("list").is_empty());
}

async fn jobs_of_any_kind_run_one_at_a_time_per_lane_and_finish_once(backend: Backend) {
    let f = fixture(backend).await;
    let at = now();
    let in_lane = |n: u32| NewJob {
        lane: Some("lane:a".into()),
        ..NewJob::new("test", &serde_json::json!({ "n": n }), at)
    };
    let (first, second) = (in_lane(1), in_lane(2));
    let free = NewJob::new("other", &serde_json::json!({ "n": 3 }), at);
    for job in [&first, &second, &free] {
        f.store.jobs.enqueue(job).await.expect("enqueue");
    }
    let claimed = claim(&f, at, LEASE, 10).await;
    let mut ids: Vec<JobId> = claimed.iter().map(|j| j.id).collect();
    ids.sort_by_key(|id| id.0);
    assert_eq!(
        ids,
        [first.id, free.id],
        "the lane's oldest, and the free job"
    );
    let mine = claimed.iter().find(|j| j.id == first.id).expect("first");
    assert_eq!(mine.kind, "test");
    let payload: serde_json::Value = mine.payload().expect("payload");
    assert_eq!(payload, serde_json::json!({ "n": 1 }));
    let other = claimed.iter().find(|j| j.id == free.id).expect("free");
    let later = at + Duration::seconds(10);
    assert!(
        f.store
            .jobs
            .retry_later(other, later, "busy")
            .await
            .expect("retry")
    );
    assert!(
        claim(&f, at, LEASE, 10).await.is_empty(),
        "the lane waits for its first job, the free job for its time"
    );
    assert!(f.store.jobs.finish(mine).await.expect("finish"));
    assert!(!f.store.jobs.finish(mine).await.expect("finish"), "once");
    let next = claim(&f, at, LEASE, 10).await;
    assert_eq!(next.iter().map(|j| j.id).collect::<Vec<_>>(), [second.id]);
    assert!(
        !f.store.jobs.finish(other).await.expect("finish"),
        "a claim that was given up no longer finishes the job"
    );
    assert_eq!(f.store.jobs.counts(at).await.expect("counts"), (1, 1));
}

/// Two API processes writing one room at once can commit its jobs out of id order: the lane's
/// oldest job may appear while a newer one runs. Found by `bench/chaos`: the claim picked the
/// newcomer, broke the one-claim-per-lane index and failed for every job until the newer one
/// finished.
async fn a_job_committed_after_a_newer_one_of_its_lane_waits_for_it(backend: Backend) {
    let f = fixture(backend).await;
    let at = now();
    let in_lane = |n: u32| NewJob {
        lane: Some("lane:b".into()),
        ..NewJob::new("test", &serde_json::json!({ "n": n }), at)
    };
    let (older, newer) = (in_lane(1), in_lane(2));
    assert!(older.id.0 < newer.id.0);
    f.store.jobs.enqueue(&newer).await.expect("enqueue");
    let short = std::time::Duration::from_secs(2);
    let running = claim(&f, at, short, 10).await;
    assert_eq!(running.iter().map(|j| j.id).collect::<Vec<_>>(), [newer.id]);
    f.store.jobs.enqueue(&older).await.expect("enqueue");
    let free = NewJob::new("other", &serde_json::json!({ "n": 3 }), at);
    f.store.jobs.enqueue(&free).await.expect("enqueue");
    let claimed = f.store.jobs.claim(at, LEASE, 10).await;
    let ids: Vec<JobId> = claimed
        .expect("the claim works")
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(
        ids,
        [free.id],
        "the older job waits for the running one of its lane"
    );
    let later = at + Duration::seconds(3);
    let again = claim(&f, later, LEASE, 10).await;
    assert_eq!(
        again.iter().map(|j| j.id).collect::<Vec<_>>(),
        [newer.id],
        "a lapsed claim is taken over before the lane moves on"
    );
    assert!(f.store.jobs.finish(&again[0]).await.expect("finish"));
    let last = claim(&f, later, LEASE, 10).await;
    assert_eq!(last.iter().map(|j| j.id).collect::<Vec<_>>(), [older.id]);
}

async fn an_interrupted_reply_is_pending_again_only_while_its_claim_holds(backend: Backend) {
    let f = fixture(backend).await;
    let (user, room) = user_and_room(&f.store).await;
    let sent = send(&f, user, room, "interrupted").await;
    let at = now();
    let short = std::time::Duration::from_secs(2);
    let stale = claim(&f, at, short, 1).await.remove(0);
    let current = claim(&f, at + Duration::seconds(3), LEASE, 1)
        .await
        .remove(0);
    let replies = &f.store.replies;
    replies
        .mark_streaming(sent.reply.id, at)
        .await
        .expect("mark");
    let status = || async {
        let found = f.store.messages.find(user, room, sent.reply.id).await;
        found.expect("find").expect("the reply").status
    };
    replies
        .reset_to_pending(&stale, sent.reply.id, at)
        .await
        .expect("reset");
    assert_eq!(
        status().await,
        MessageStatus::Streaming,
        "not the stale run's"
    );
    replies
        .reset_to_pending(&current, sent.reply.id, at)
        .await
        .expect("reset");
    assert_eq!(status().await, MessageStatus::Pending);
}
