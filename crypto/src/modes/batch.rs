//! The batch paths of [`ColumnKey`]: a column of values sealed or opened together.
//!
//! For SM4-GCM and for SIV (SM4 or AES-256) the counter blocks of many values share block-cipher
//! passes ([`crate::multi`]), and SIV's PRF calls are batched too. Values that cannot take the
//! fast path (malformed, wrong key, unknown version) get their error in their own slot; the
//! rest of the column still decrypts. Other modes fall back to one value at a time.

use std::collections::BTreeSet;

use crate::domain::KeyDomain;
use crate::envelope::{Envelope, HEADER_LEN, NONCE_LEN, SIV_LEN, TAG_LEN};
use crate::error::CryptoError;
use crate::gcm::GcmItem;
use crate::rng;
use crate::scheme::Mode;
use crate::siv::{SivBatch, SivItem};

use super::column_key::{ColumnKey, Engine};
use super::deterministic::DeterministicEngine;
use super::randomized::RandomizedEngine;
use super::{Batch, ColumnCipher};

/// A value being opened: its ciphertext is in batch slot `slot`, the rest is here.
struct Staged {
    slot: usize,
    version: u32,
    /// Nonce (randomized, first 12 bytes) or synthetic IV (deterministic).
    iv: [u8; 16],
    tag: [u8; TAG_LEN],
    aad: [u8; HEADER_LEN + 16],
}

/// `header ‖ domain digest`, the associated data of every value.
fn aad(header: &[u8; HEADER_LEN], domain: &KeyDomain) -> [u8; HEADER_LEN + 16] {
    let mut a = [0u8; HEADER_LEN + 16];
    a[..HEADER_LEN].copy_from_slice(header);
    a[HEADER_LEN..].copy_from_slice(domain.digest());
    a
}

impl ColumnKey {
    /// Seals a column on the fast path; `false` if this key has none (the caller loops).
    pub(super) fn seal_batch_fast(
        &self,
        plaintexts: &[&[u8]],
        domain: &KeyDomain,
        out: &mut Batch,
    ) -> bool {
        let version = self.active_version();
        let Ok(engine) = self.engine(version) else {
            return false;
        };
        let header = self.header(version);
        let aad = aad(&header, domain);
        out.clear();
        match engine {
            Engine::Randomized(RandomizedEngine::Sm4(gcm)) => {
                // Each slot: header ‖ nonce ‖ ciphertext ‖ tag.
                let mut nonces = Vec::with_capacity(plaintexts.len());
                for p in plaintexts {
                    match rng::nonce12() {
                        Ok(nonce) => {
                            let i = out.push_slot(HEADER_LEN + NONCE_LEN + p.len() + TAG_LEN);
                            let slot = out.slot_mut(i);
                            slot[..HEADER_LEN].copy_from_slice(&header);
                            slot[HEADER_LEN..HEADER_LEN + NONCE_LEN].copy_from_slice(&nonce);
                            slot[HEADER_LEN + NONCE_LEN..HEADER_LEN + NONCE_LEN + p.len()]
                                .copy_from_slice(p);
                            nonces.push(nonce);
                        }
                        Err(e) => out.push_err(e.into()),
                    }
                }
                let views = out
                    .sub_slices_mut(|_, r| Some(r.start + HEADER_LEN + NONCE_LEN..r.end - TAG_LEN));
                let mut slots = Vec::with_capacity(views.len());
                let mut items: Vec<GcmItem<'_>> = views
                    .into_iter()
                    .zip(&nonces)
                    .map(|((i, data), nonce)| {
                        slots.push(i);
                        GcmItem {
                            nonce: *nonce,
                            aad: &aad,
                            data,
                            tag: [0u8; TAG_LEN],
                        }
                    })
                    .collect();
                let sealed = gcm.encrypt_many(&mut items).is_ok();
                let tags: Vec<[u8; TAG_LEN]> = items.iter().map(|it| it.tag).collect();
                drop(items);
                for (i, tag) in slots.into_iter().zip(tags) {
                    if sealed {
                        let slot = out.slot_mut(i);
                        let end = slot.len();
                        slot[end - TAG_LEN..].copy_from_slice(&tag);
                    } else {
                        out.fail(i, self.too_long());
                    }
                }
                true
            }
            Engine::Deterministic(DeterministicEngine::Sm4(siv)) => {
                self.seal_siv(siv, &header, &aad, plaintexts, out);
                true
            }
            Engine::Deterministic(DeterministicEngine::Aes(siv)) => {
                self.seal_siv(siv, &header, &aad, plaintexts, out);
                true
            }
            _ => false,
        }
    }

    fn seal_siv(
        &self,
        siv: &impl SivBatch,
        header: &[u8; HEADER_LEN],
        aad: &[u8],
        plaintexts: &[&[u8]],
        out: &mut Batch,
    ) {
        // Each slot: header ‖ synthetic IV ‖ ciphertext.
        for p in plaintexts {
            let i = out.push_slot(HEADER_LEN + SIV_LEN + p.len());
            let slot = out.slot_mut(i);
            slot[..HEADER_LEN].copy_from_slice(header);
            slot[HEADER_LEN + SIV_LEN..].copy_from_slice(p);
        }
        let views = out.sub_slices_mut(|_, r| Some(r.start + HEADER_LEN + SIV_LEN..r.end));
        let mut slots = Vec::with_capacity(views.len());
        let mut items: Vec<SivItem<'_>> = views
            .into_iter()
            .map(|(i, data)| {
                slots.push(i);
                SivItem {
                    aad,
                    data,
                    iv: [0u8; SIV_LEN],
                }
            })
            .collect();
        let sealed = siv.seal_many(&mut items).is_ok();
        let ivs: Vec<[u8; SIV_LEN]> = items.iter().map(|it| it.iv).collect();
        drop(items);
        for (i, iv) in slots.into_iter().zip(ivs) {
            if sealed {
                out.slot_mut(i)[HEADER_LEN..HEADER_LEN + SIV_LEN].copy_from_slice(&iv);
            } else {
                out.fail(i, self.too_long());
            }
        }
    }

    /// Opens a column on the fast path; `false` if this key has none (the caller loops).
    pub(super) fn open_batch_fast(
        &self,
        stored: &[&[u8]],
        domain: &KeyDomain,
        out: &mut Batch,
    ) -> bool {
        let fast = match self.mode() {
            Mode::Deterministic => true,
            Mode::Randomized => self
                .engine(self.active_version())
                .is_ok_and(|e| matches!(e, Engine::Randomized(RandomizedEngine::Sm4(_)))),
            _ => false,
        };
        if !fast {
            return false;
        }
        out.clear();
        // Stage every value: its ciphertext goes into its slot, the rest is kept aside.
        let mut staged = Vec::with_capacity(stored.len());
        for s in stored {
            let env = match Envelope::parse(s) {
                Ok(env) => env,
                Err(e) => {
                    out.push_err(self.malformed(e));
                    continue;
                }
            };
            if let Err(e) = self
                .check_header(&env.header)
                .and_then(|()| self.engine(env.header.key_version).map(|_| ()))
            {
                out.push_err(e);
                continue;
            }
            let mut iv = [0u8; 16];
            let mut tag = [0u8; TAG_LEN];
            let ct = match self.mode() {
                Mode::Randomized => {
                    let (nonce, rest) = env.body.split_at(NONCE_LEN);
                    let (ct, t) = rest.split_at(rest.len() - TAG_LEN);
                    iv[..NONCE_LEN].copy_from_slice(nonce);
                    tag.copy_from_slice(t);
                    ct
                }
                _ => {
                    let (v, ct) = env.body.split_at(SIV_LEN);
                    iv.copy_from_slice(v);
                    ct
                }
            };
            let slot = out.push_slot(ct.len());
            out.slot_mut(slot).copy_from_slice(ct);
            staged.push(Staged {
                slot,
                version: env.header.key_version,
                iv,
                tag,
                aad: aad(env.header_bytes, domain),
            });
        }
        let versions: BTreeSet<u32> = staged.iter().map(|s| s.version).collect();
        let mut ok = Vec::new();
        for version in versions {
            let members: Vec<&Staged> = staged.iter().filter(|s| s.version == version).collect();
            let mut next = members.iter().map(|s| s.slot).peekable();
            let views = out.sub_slices_mut(|i, r| {
                if next.peek() == Some(&i) {
                    next.next();
                    Some(r.clone())
                } else {
                    None
                }
            });
            match self.engine(version).expect("checked while staging") {
                Engine::Randomized(RandomizedEngine::Sm4(gcm)) => {
                    let mut items: Vec<GcmItem<'_>> = views
                        .into_iter()
                        .zip(&members)
                        .map(|((_, data), s)| GcmItem {
                            nonce: s.iv[..NONCE_LEN].try_into().expect("12 bytes"),
                            aad: &s.aad,
                            data,
                            tag: s.tag,
                        })
                        .collect();
                    gcm.decrypt_many(&mut items, &mut ok);
                }
                Engine::Deterministic(DeterministicEngine::Sm4(siv)) => {
                    open_siv(siv, views, &members, &mut ok)
                }
                Engine::Deterministic(DeterministicEngine::Aes(siv)) => {
                    open_siv(siv, views, &members, &mut ok)
                }
                _ => unreachable!("the fast path was chosen for this key's engines"),
            }
            for (s, good) in members.iter().zip(&ok) {
                if !good {
                    out.fail(
                        s.slot,
                        CryptoError::Authentication {
                            key: self.name.clone(),
                            version,
                            domain: domain.name().to_owned(),
                        },
                    );
                }
            }
        }
        true
    }
}

fn open_siv(
    siv: &impl SivBatch,
    views: Vec<(usize, &mut [u8])>,
    members: &[&Staged],
    ok: &mut Vec<bool>,
) {
    let mut items: Vec<SivItem<'_>> = views
        .into_iter()
        .zip(members)
        .map(|((_, data), s)| SivItem {
            aad: &s.aad,
            data,
            iv: s.iv,
        })
        .collect();
    siv.open_many(&mut items, ok);
}
