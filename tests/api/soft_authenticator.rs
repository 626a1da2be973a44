//! A software WebAuthn authenticator for tests without a browser: it answers the
//! server's `navigator.credentials.create/get` options the way a browser and a
//! CTAP2 authenticator together would (attestation format "none", an ES256 key,
//! a signature counter), in the JSON the page's `webauthn.js` posts. Because the
//! test controls it, it can also lie: another origin, no user verification, an
//! older counter. Written from the W3C WebAuthn Level 3 formats (§6.1 authenticator
//! data, §6.5 attestation object, §5.8.1 client data).

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use openssl::bn::BigNumContext;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::sign::Signer;
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug)]
pub struct Flags {
    pub user_present: bool,
    pub user_verified: bool,
    pub backup_eligible: bool,
}

impl Default for Flags {
    fn default() -> Self {
        Self {
            user_present: true,
            user_verified: true,
            backup_eligible: false,
        }
    }
}

pub struct SoftAuthenticator {
    key: EcKey<Private>,
    credential_id: Vec<u8>,
    counter: u32,
    user_handle: Option<Vec<u8>>,
}

impl Default for SoftAuthenticator {
    fn default() -> Self {
        Self::new()
    }
}

pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64 of either alphabet, padded or not.
pub fn b64_decode_any(text: &str) -> Vec<u8> {
    let normalized: String = text
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    URL_SAFE_NO_PAD
        .decode(normalized.as_bytes())
        .or_else(|_| STANDARD.decode(text))
        .expect("base64 in the options")
}

fn sha256(data: &[u8]) -> Vec<u8> {
    openssl::sha::sha256(data).to_vec()
}

/// Just enough CBOR (RFC 8949) for attestation objects and COSE keys.
enum Cbor {
    Int(i64),
    Bytes(Vec<u8>),
    Text(String),
    Map(Vec<(Cbor, Cbor)>),
}

fn cbor_head(out: &mut Vec<u8>, major: u8, value: u64) {
    let major = major << 5;
    match value {
        0..=23 => out.push(major | value as u8),
        24..=0xff => out.extend([major | 24, value as u8]),
        0x100..=0xffff => {
            out.push(major | 25);
            out.extend((value as u16).to_be_bytes());
        }
        _ => {
            out.push(major | 26);
            out.extend((value as u32).to_be_bytes());
        }
    }
}

impl Cbor {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Cbor::Int(n) if *n >= 0 => cbor_head(out, 0, *n as u64),
            Cbor::Int(n) => cbor_head(out, 1, (-1 - *n) as u64),
            Cbor::Bytes(b) => {
                cbor_head(out, 2, b.len() as u64);
                out.extend(b);
            }
            Cbor::Text(t) => {
                cbor_head(out, 3, t.len() as u64);
                out.extend(t.as_bytes());
            }
            Cbor::Map(entries) => {
                cbor_head(out, 5, entries.len() as u64);
                for (k, v) in entries {
                    k.encode(out);
                    v.encode(out);
                }
            }
        }
    }

    fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// The inner `publicKey` object, whether or not the options are wrapped.
fn public_key(options: &Value) -> &Value {
    options.get("publicKey").unwrap_or(options)
}

fn host_of(origin: &str) -> String {
    url::Url::parse(origin)
        .expect("origin is a URL")
        .host_str()
        .expect("origin has a host")
        .to_owned()
}

fn client_data(kind: &str, challenge: &str, origin: &str) -> Vec<u8> {
    let challenge = b64url(&b64_decode_any(challenge));
    json!({ "type": kind, "challenge": challenge, "origin": origin, "crossOrigin": false })
        .to_string()
        .into_bytes()
}

impl SoftAuthenticator {
    pub fn new() -> Self {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("P-256");
        let mut credential_id = vec![0u8; 32];
        openssl::rand::rand_bytes(&mut credential_id).expect("random credential id");
        Self {
            key: EcKey::generate(&group).expect("a P-256 key"),
            credential_id,
            counter: 0,
            user_handle: None,
        }
    }

    pub fn credential_id_b64(&self) -> String {
        b64url(&self.credential_id)
    }

    pub fn counter(&self) -> u32 {
        self.counter
    }

    pub fn set_counter(&mut self, n: u32) {
        self.counter = n;
    }

    fn cose_key(&self) -> Vec<u8> {
        let group = self.key.group();
        let mut ctx = BigNumContext::new().unwrap();
        let mut x = openssl::bn::BigNum::new().unwrap();
        let mut y = openssl::bn::BigNum::new().unwrap();
        self.key
            .public_key()
            .affine_coordinates(group, &mut x, &mut y, &mut ctx)
            .unwrap();
        Cbor::Map(vec![
            (Cbor::Int(1), Cbor::Int(2)),
            (Cbor::Int(3), Cbor::Int(-7)),
            (Cbor::Int(-1), Cbor::Int(1)),
            (Cbor::Int(-2), Cbor::Bytes(x.to_vec_padded(32).unwrap())),
            (Cbor::Int(-3), Cbor::Bytes(y.to_vec_padded(32).unwrap())),
        ])
        .to_vec()
    }

    fn authenticator_data(&self, rp_id: &str, flags: Flags, attested: bool) -> Vec<u8> {
        let mut data = sha256(rp_id.as_bytes());
        let mut bits = 0u8;
        if flags.user_present {
            bits |= 0x01;
        }
        if flags.user_verified {
            bits |= 0x04;
        }
        if flags.backup_eligible {
            bits |= 0x08;
        }
        if attested {
            bits |= 0x40;
        }
        data.push(bits);
        data.extend(self.counter.to_be_bytes());
        if attested {
            data.extend([0u8; 16]);
            data.extend((self.credential_id.len() as u16).to_be_bytes());
            data.extend(&self.credential_id);
            data.extend(self.cose_key());
        }
        data
    }

    /// Answers creation options as the browser's registration JSON.
    pub fn register(&mut self, options: &Value, origin: &str, flags: Flags) -> Value {
        let pk = public_key(options);
        let challenge = pk["challenge"].as_str().expect("options have a challenge");
        let rp_id = pk["rp"]["id"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| host_of(origin));
        let user_id = pk["user"]["id"].as_str().expect("options name the user");
        self.user_handle = Some(b64_decode_any(user_id));
        let client_data = client_data("webauthn.create", challenge, origin);
        let attestation = Cbor::Map(vec![
            (Cbor::Text("fmt".into()), Cbor::Text("none".into())),
            (Cbor::Text("attStmt".into()), Cbor::Map(vec![])),
            (
                Cbor::Text("authData".into()),
                Cbor::Bytes(self.authenticator_data(&rp_id, flags, true)),
            ),
        ])
        .to_vec();
        json!({
            "id": self.credential_id_b64(),
            "rawId": self.credential_id_b64(),
            "type": "public-key",
            "response": {
                "attestationObject": b64url(&attestation),
                "clientDataJSON": b64url(&client_data),
            },
            "extensions": {}
        })
    }

    /// Answers request options as the browser's assertion JSON (counter + 1).
    pub fn assert(&mut self, options: &Value, origin: &str, flags: Flags) -> Value {
        let pk = public_key(options);
        let challenge = pk["challenge"].as_str().expect("options have a challenge");
        let rp_id = pk["rpId"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| host_of(origin));
        self.counter += 1;
        let client_data = client_data("webauthn.get", challenge, origin);
        let auth_data = self.authenticator_data(&rp_id, flags, false);
        let key = PKey::from_ec_key(self.key.clone()).unwrap();
        let mut signer = Signer::new(MessageDigest::sha256(), &key).unwrap();
        signer.update(&auth_data).unwrap();
        signer.update(&sha256(&client_data)).unwrap();
        let signature = signer.sign_to_vec().unwrap();
        json!({
            "id": self.credential_id_b64(),
            "rawId": self.credential_id_b64(),
            "type": "public-key",
            "response": {
                "authenticatorData": b64url(&auth_data),
                "clientDataJSON": b64url(&client_data),
                "signature": b64url(&signature),
                "userHandle": self.user_handle.as_deref().map(b64url),
            },
            "extensions": {}
        })
    }
}
