//! ACLs and authentication: world, digest (addAuth), ip, auth; getACL/setACL with versions;
//! NoAuth and InvalidACL; whoAmI.

use warren_tests::zk::{self, Acl, Acls, AuthId, CreateMode, Error, Permission};
use warren_tests::{digest_id, unique, WarrenOpts, WarrenProcess};

fn persistent() -> zk::CreateOptions<'static> {
    CreateMode::Persistent.with_acls(Acls::anyone_all())
}

async fn setup(name: &str) -> (WarrenProcess, zk::Client, String) {
    let server = WarrenProcess::start(WarrenOpts::default());
    let c = server.client().await;
    let root = format!("/{}", unique(name));
    c.create(&root, b"", &persistent()).await.unwrap();
    (server, c, root)
}

fn acl(perm: Permission, scheme: &str, id: &str) -> Acl {
    Acl::new(perm, AuthId::new(scheme, id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_acl_is_world_anyone_all() {
    let (_s, c, root) = setup("acldefault").await;
    let (acls, stat) = c.get_acl(&root).await.unwrap();
    assert_eq!(acls, vec![acl(Permission::ALL, "world", "anyone")]);
    assert_eq!(stat.aversion, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_acl_requires_matching_add_auth() {
    let (s, admin, root) = setup("acldigest").await;
    let p = format!("{root}/secret");
    let id = digest_id("alice", "wonderland");
    let acls = [acl(Permission::ALL, "digest", &id)];
    admin.create(&p, b"s3cret", &CreateMode::Persistent.with_acls(Acls::new(&acls))).await.unwrap();

    // No auth: every protected op is refused.
    assert_eq!(admin.get_data(&p).await.unwrap_err(), Error::NoAuth);
    assert_eq!(admin.set_data(&p, b"x", None).await.unwrap_err(), Error::NoAuth);
    assert_eq!(admin.create(&format!("{p}/kid"), b"", &persistent()).await.unwrap_err(), Error::NoAuth);
    assert_eq!(admin.list_children(&p).await.unwrap_err(), Error::NoAuth);
    assert_eq!(admin.set_acl(&p, &[acl(Permission::ALL, "world", "anyone")], None).await.unwrap_err(), Error::NoAuth);
    // exists is not ACL-checked.
    assert!(admin.check_stat(&p).await.unwrap().is_some());

    // Wrong password: still refused.
    let wrong = s.client_with(zk::Client::connector().with_auth("digest", b"alice:rabbit")).await;
    assert_eq!(wrong.get_data(&p).await.unwrap_err(), Error::NoAuth);

    // Right password, at connect time.
    let alice = s.client_with(zk::Client::connector().with_auth("digest", b"alice:wonderland")).await;
    assert_eq!(alice.get_data(&p).await.unwrap().0, b"s3cret");
    alice.set_data(&p, b"new", None).await.unwrap();
    alice.create(&format!("{p}/kid"), b"", &persistent()).await.unwrap();

    // Right password, added later with addAuth.
    let late = s.client().await;
    assert_eq!(late.get_data(&p).await.unwrap_err(), Error::NoAuth);
    late.auth("digest", b"alice:wonderland").await.unwrap();
    assert_eq!(late.get_data(&p).await.unwrap().0, b"new");

    let (got, _) = alice.get_acl(&p).await.unwrap();
    assert_eq!(got, acls.to_vec(), "getACL returns the digest id as stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_world_acl_and_permission_bits() {
    let (_s, c, root) = setup("aclperm").await;
    let ro = format!("{root}/ro");
    c.create(&ro, b"r", &CreateMode::Persistent.with_acls(Acls::anyone_read())).await.unwrap();
    assert_eq!(c.get_data(&ro).await.unwrap().0, b"r");
    assert_eq!(c.set_data(&ro, b"w", None).await.unwrap_err(), Error::NoAuth);
    assert_eq!(c.create(&format!("{ro}/k"), b"", &persistent()).await.unwrap_err(), Error::NoAuth);

    // CREATE without DELETE: children can be made but not removed.
    let cd = format!("{root}/createonly");
    let acls = [acl(Permission::CREATE | Permission::READ, "world", "anyone")];
    c.create(&cd, b"", &CreateMode::Persistent.with_acls(Acls::new(&acls))).await.unwrap();
    c.create(&format!("{cd}/k"), b"", &persistent()).await.unwrap();
    assert_eq!(c.delete(&format!("{cd}/k"), None).await.unwrap_err(), Error::NoAuth);
    // Deleting a node is governed by its parent's DELETE bit, not its own ACL.
    c.delete(&ro, None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_acl_matches_loopback_only() {
    let (_s, c, root) = setup("aclip").await;
    let mine = format!("{root}/mine");
    let acls = [acl(Permission::ALL, "ip", "127.0.0.1")];
    c.create(&mine, b"ok", &CreateMode::Persistent.with_acls(Acls::new(&acls))).await.unwrap();
    assert_eq!(c.get_data(&mine).await.unwrap().0, b"ok");
    c.set_data(&mine, b"ok2", None).await.unwrap();

    let net = format!("{root}/net");
    let acls = [acl(Permission::ALL, "ip", "127.0.0.0/8")];
    c.create(&net, b"n", &CreateMode::Persistent.with_acls(Acls::new(&acls))).await.unwrap();
    assert_eq!(c.get_data(&net).await.unwrap().0, b"n", "CIDR 127.0.0.0/8 covers 127.0.0.1");

    let theirs = format!("{root}/theirs");
    let acls = [acl(Permission::ALL, "ip", "10.1.2.3")];
    c.create(&theirs, b"no", &CreateMode::Persistent.with_acls(Acls::new(&acls))).await.unwrap();
    assert_eq!(c.get_data(&theirs).await.unwrap_err(), Error::NoAuth);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_scheme_means_the_creators_identities() {
    let (s, _c, root) = setup("aclauth").await;
    let bob = s.client_with(zk::Client::connector().with_auth("digest", b"bob:builder")).await;
    let p = format!("{root}/bobs");
    bob.create(&p, b"b", &CreateMode::Persistent.with_acls(Acls::creator_all())).await.unwrap();
    let (acls, _) = bob.get_acl(&p).await.unwrap();
    assert_eq!(
        acls,
        vec![acl(Permission::ALL, "digest", &digest_id("bob", "builder"))],
        "auth ACL expands to the creator's digest"
    );
    assert_eq!(bob.get_data(&p).await.unwrap().0, b"b");
    let anon = s.client().await;
    assert_eq!(anon.get_data(&p).await.unwrap_err(), Error::NoAuth);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_acls_are_refused() {
    let (_s, c, root) = setup("aclinvalid").await;
    let bad_scheme = [acl(Permission::ALL, "nosuchscheme", "x")];
    assert_eq!(
        c.create(&format!("{root}/a"), b"", &CreateMode::Persistent.with_acls(Acls::new(&bad_scheme)))
            .await
            .unwrap_err(),
        Error::InvalidAcl
    );
    let bad_digest = [acl(Permission::ALL, "digest", "no-colon-here")];
    assert_eq!(
        c.create(&format!("{root}/b"), b"", &CreateMode::Persistent.with_acls(Acls::new(&bad_digest)))
            .await
            .unwrap_err(),
        Error::InvalidAcl
    );
    let bad_ip = [acl(Permission::ALL, "ip", "not.an.ip")];
    assert_eq!(
        c.create(&format!("{root}/c"), b"", &CreateMode::Persistent.with_acls(Acls::new(&bad_ip))).await.unwrap_err(),
        Error::InvalidAcl
    );
    // auth scheme without any authenticated identity.
    assert_eq!(
        c.create(&format!("{root}/d"), b"", &CreateMode::Persistent.with_acls(Acls::creator_all())).await.unwrap_err(),
        Error::InvalidAcl
    );
    assert_eq!(c.set_acl(&root, &bad_scheme, None).await.unwrap_err(), Error::InvalidAcl);
    assert_eq!(c.list_children(&root).await.unwrap(), Vec::<String>::new(), "nothing was created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_acl_versions_and_effect() {
    let (_s, c, root) = setup("aclset").await;
    let p = format!("{root}/n");
    c.create(&p, b"d", &persistent()).await.unwrap();
    let ro = [acl(Permission::READ, "world", "anyone")];
    assert_eq!(c.set_acl(&p, &ro, Some(3)).await.unwrap_err(), Error::BadVersion);
    let st = c.set_acl(&p, &ro, Some(0)).await.unwrap();
    assert_eq!(st.aversion, 1);
    assert_eq!(st.version, 0, "setACL leaves the data version alone");
    let (acls, st) = c.get_acl(&p).await.unwrap();
    assert_eq!(acls, ro.to_vec());
    assert_eq!(st.aversion, 1);
    assert_eq!(c.set_data(&p, b"x", None).await.unwrap_err(), Error::NoAuth);
    // Without ADMIN the ACL cannot be changed back.
    assert_eq!(c.set_acl(&p, &[acl(Permission::ALL, "world", "anyone")], None).await.unwrap_err(), Error::NoAuth);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoami_lists_the_sessions_identities() {
    let (s, c, _root) = setup("whoami").await;
    let users = c.list_auth_users().await.unwrap();
    assert!(
        users.iter().any(|u| u.scheme() == "ip" && u.user() == "127.0.0.1"),
        "anonymous loopback client is ip:127.0.0.1, got {users:?}"
    );
    let carol = s.client_with(zk::Client::connector().with_auth("digest", b"carol:pw")).await;
    let users = carol.list_auth_users().await.unwrap();
    assert!(users.iter().any(|u| u.scheme() == "digest" && u.user() == "carol"), "digest identity missing: {users:?}");
    assert!(users.iter().any(|u| u.scheme() == "ip"), "ip identity missing: {users:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_auth_scheme_fails_the_session() {
    let (_s, c, root) = setup("authfail").await;
    let r = c.auth("nosuchscheme", b"whatever").await;
    assert_eq!(r.unwrap_err(), Error::AuthFailed, "unknown auth scheme → AUTHFAILED");
    assert!(c.get_data(&root).await.is_err(), "session is unusable after AUTH_FAILED");
}
