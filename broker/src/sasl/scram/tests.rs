use super::*;

// RFC 7677, section 3: user "user", password "pencil".
const CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
const SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const SALT_B64: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                            p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

fn rfc_credential() -> ScramCredential {
    let salt = B64.decode(SALT_B64).unwrap();
    let salted = salted_password(Mechanism::ScramSha256, b"pencil", &salt, 4096);
    credential_from_salted(Mechanism::ScramSha256, salt, 4096, &salted)
}

fn lookup(user: &str) -> Option<ScramCredential> {
    (user == "user").then(rfc_credential)
}

fn challenged() -> ScramServer {
    let mut s = ScramServer::new(Mechanism::ScramSha256);
    match s
        .step(CLIENT_FIRST.as_bytes(), lookup, SERVER_NONCE)
        .unwrap()
    {
        ScramStep::Challenge(t) => assert_eq!(t, SERVER_FIRST.as_bytes()),
        ScramStep::Success { .. } => panic!("no challenge"),
    }
    s
}

#[test]
fn rfc7677_server_side() {
    let mut s = challenged();
    match s.step(CLIENT_FINAL.as_bytes(), lookup, "unused").unwrap() {
        ScramStep::Success { user, server_final } => {
            assert_eq!(user, "user");
            assert_eq!(server_final, SERVER_FINAL.as_bytes());
        }
        ScramStep::Challenge(_) => panic!("no success"),
    }
}

#[test]
fn rfc7677_client_side() {
    let mut c = ScramClient::new(
        Mechanism::ScramSha256,
        "user",
        "pencil",
        CLIENT_NONCE.into(),
    );
    assert_eq!(c.client_first(), CLIENT_FIRST.as_bytes());
    let client_final = c.client_final(SERVER_FIRST.as_bytes()).unwrap();
    assert_eq!(client_final, CLIENT_FINAL.as_bytes());
    c.verify_server_final(SERVER_FINAL.as_bytes()).unwrap();
    assert!(c.verify_server_final(b"v=AAAA").is_err());
}

#[test]
fn bad_proof_is_refused() {
    let mut s = challenged();
    let bad = CLIENT_FINAL.replace("p=dHzb", "p=dHzc");
    let e = s.step(bad.as_bytes(), lookup, "").err().unwrap();
    assert!(matches!(e, SaslError::Failed(_)), "{e:?}");
}

#[test]
fn wrong_password_is_refused() {
    let mut c = ScramClient::new(
        Mechanism::ScramSha256,
        "user",
        "pencil!",
        CLIENT_NONCE.into(),
    );
    let mut s = challenged();
    let client_final = c.client_final(SERVER_FIRST.as_bytes()).unwrap();
    assert!(matches!(
        s.step(&client_final, lookup, ""),
        Err(SaslError::Failed(_))
    ));
}

#[test]
fn bad_nonce_is_refused() {
    let mut s = challenged();
    let bad = CLIENT_FINAL.replace("hNlF$k0,", "hNlF$k1,");
    let e = s.step(bad.as_bytes(), lookup, "").err().unwrap();
    assert!(
        matches!(e, SaslError::Failed(ref m) if m.contains("nonce")),
        "{e:?}"
    );
}

#[test]
fn replayed_client_final_is_refused() {
    let mut s = challenged();
    assert!(s.step(CLIENT_FINAL.as_bytes(), lookup, "").is_ok());
    // Same exchange again: over.
    assert!(matches!(
        s.step(CLIENT_FINAL.as_bytes(), lookup, ""),
        Err(SaslError::IllegalState(_))
    ));
    // A new exchange gets a new server nonce, so the old proof does not match it.
    let mut fresh = ScramServer::new(Mechanism::ScramSha256);
    let _ = fresh
        .step(CLIENT_FIRST.as_bytes(), lookup, "another-server-nonce")
        .unwrap();
    assert!(fresh.step(CLIENT_FINAL.as_bytes(), lookup, "").is_err());
}

#[test]
fn unknown_user_and_malformed_messages_are_refused() {
    let mut s = ScramServer::new(Mechanism::ScramSha256);
    assert!(s.step(b"n,,n=nobody,r=abc", lookup, "x").is_err());
    for bad in [
        &b"p=tls-unique,,n=user,r=abc"[..],
        b"n,,n=user",
        b"n,,r=abc",
        b"n,,n=us=ZZer,r=abc",
        b"n,,n=user,r=",
        b"\xff",
    ] {
        let mut s = ScramServer::new(Mechanism::ScramSha256);
        assert!(s.step(bad, lookup, "x").is_err(), "{bad:?}");
    }
    let mut s = challenged();
    assert!(s.step(b"c=biws,r=x", lookup, "").is_err(), "no proof");
}

#[test]
fn sha512_round_trip_and_escaped_names() {
    let cred = new_credential(Mechanism::ScramSha512, "s3cret", ITERATIONS_MIN);
    assert_eq!(cred.stored_key.len(), 64);
    let name = "a,b=c";
    let find = |u: &str| (u == name).then(|| cred.clone());
    let mut server = ScramServer::new(Mechanism::ScramSha512);
    let mut client = ScramClient::new(Mechanism::ScramSha512, name, "s3cret", new_nonce());
    let first = match server
        .step(&client.client_first(), find, &new_nonce())
        .unwrap()
    {
        ScramStep::Challenge(t) => t,
        ScramStep::Success { .. } => panic!("no challenge"),
    };
    let client_final = client.client_final(&first).unwrap();
    let (user, server_final) = match server.step(&client_final, find, "").unwrap() {
        ScramStep::Success { user, server_final } => (user, server_final),
        ScramStep::Challenge(_) => panic!("no success"),
    };
    assert_eq!(user, name);
    client.verify_server_final(&server_final).unwrap();
    assert!(password_matches(Mechanism::ScramSha512, &cred, "s3cret"));
    assert!(!password_matches(Mechanism::ScramSha512, &cred, "s3cret "));
}

#[test]
fn debug_hides_keys() {
    let cred = new_credential(Mechanism::ScramSha256, "pw", ITERATIONS_MIN);
    let text = format!("{cred:?}");
    assert!(
        !text.contains("stored_key") && !text.contains("server_key"),
        "{text}"
    );
}

#[test]
fn the_client_refuses_iteration_counts_out_of_bounds() {
    for iterations in ["4095", "16385", "2147483647"] {
        let mut c = ScramClient::new(
            Mechanism::ScramSha256,
            "user",
            "pencil",
            CLIENT_NONCE.into(),
        );
        let server_first = SERVER_FIRST.replace("i=4096", &format!("i={iterations}"));
        assert!(
            c.client_final(server_first.as_bytes()).is_err(),
            "{iterations}"
        );
    }
}
