//! The only place this crate calls PKCS#11 directly.
//!
//! `cryptoki` 0.12 covers almost everything we need, but it
//!
//! * has no `Mechanism` for `CKM_RSA_AES_KEY_WRAP` (0x1054) or
//!   `CKM_AES_KEY_WRAP_KWP` (0x210B), and refuses to build a vendor-defined
//!   mechanism below `CKM_VENDOR_DEFINED`;
//! * drops those mechanisms from `get_mechanism_list`, because it cannot name them;
//! * passes the `pReserved` init string some modules (NSS softoken) need only
//!   through an `unsafe` constructor.
//!
//! So this module takes a second handle on the module `cryptoki` already
//! loaded, with `dlopen(path, RTLD_NOW | RTLD_NOLOAD)`: the dynamic loader
//! returns the library that is already mapped (so the function list, sessions
//! and object handles are the ones `cryptoki` uses) and never maps a file; if
//! the module is not loaded, that is an error, not a load. It then makes
//! exactly three raw calls: `C_GetMechanismList`, `C_GetMechanismInfo` and
//! `C_WrapKey`.
//! (`cryptoki`'s own `wrap_key` also keeps the length a module first estimated
//! rather than the one it finally reports, which adds zero bytes on NSS for the
//! AES key wraps; our `C_WrapKey` trims.)
//! None of them can read key material: `C_WrapKey` returns ciphertext only.
#![allow(unsafe_code)]
// CK_ULONG is `unsigned long`: u64 here, u32 on Windows; the casts keep that portable.
#![allow(clippy::unnecessary_cast)]

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::ptr::{self, NonNull};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki_sys::{
    CKR_BUFFER_TOO_SMALL, CKR_OK, CKZ_DATA_SPECIFIED, CK_FUNCTION_LIST, CK_MECHANISM,
    CK_MECHANISM_INFO, CK_MECHANISM_TYPE, CK_RSA_AES_KEY_WRAP_PARAMS, CK_RSA_PKCS_OAEP_PARAMS,
    CK_RV, CK_ULONG,
};

/// `CKM_RSA_AES_KEY_WRAP`: RSA-OAEP of an ephemeral AES key, then RFC 5649.
pub const CKM_RSA_AES_KEY_WRAP: CK_MECHANISM_TYPE = cryptoki_sys::CKM_RSA_AES_KEY_WRAP;
/// `CKM_AES_KEY_WRAP_KWP`: AES key wrap with padding as in RFC 5649 / SP 800-38F.
pub const CKM_AES_KEY_WRAP_KWP: CK_MECHANISM_TYPE = cryptoki_sys::CKM_AES_KEY_WRAP_KWP;
/// `CKM_AES_KEY_WRAP_PAD`: meaning differs between tokens (RFC 5649 or PKCS#7 padding).
pub const CKM_AES_KEY_WRAP_PAD: CK_MECHANISM_TYPE = cryptoki_sys::CKM_AES_KEY_WRAP_PAD;
/// `CKM_RSA_PKCS_OAEP`.
pub const CKM_RSA_PKCS_OAEP: CK_MECHANISM_TYPE = cryptoki_sys::CKM_RSA_PKCS_OAEP;

/// A raw PKCS#11 return value that is not `CKR_OK`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawError(pub CK_RV);

impl std::fmt::Display for RawError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self.0 {
            0x07 => "CKR_ARGUMENTS_BAD",
            0x5 => "CKR_GENERAL_ERROR",
            0x54 => "CKR_FUNCTION_NOT_SUPPORTED",
            0x60 => "CKR_KEY_HANDLE_INVALID",
            0x62 => "CKR_KEY_SIZE_RANGE",
            0x63 => "CKR_KEY_TYPE_INCONSISTENT",
            0x67 => "CKR_KEY_NOT_WRAPPABLE",
            0x6A => "CKR_KEY_UNEXTRACTABLE",
            0x68 => "CKR_KEY_FUNCTION_NOT_PERMITTED",
            0x70 => "CKR_MECHANISM_INVALID",
            0x71 => "CKR_MECHANISM_PARAM_INVALID",
            0x113 => "CKR_WRAPPING_KEY_HANDLE_INVALID",
            0x115 => "CKR_WRAPPING_KEY_TYPE_INCONSISTENT",
            0x114 => "CKR_WRAPPING_KEY_SIZE_RANGE",
            0x130 => "CKR_DOMAIN_PARAMS_INVALID",
            0x150 => "CKR_BUFFER_TOO_SMALL",
            0x91 => "CKR_OPERATION_NOT_INITIALIZED",
            _ => "",
        };
        if name.is_empty() {
            write!(f, "CKR {:#x}", self.0)
        } else {
            write!(f, "{name}")
        }
    }
}

/// Initialize `ctx`, passing `init_string` as `pReserved` when given.
pub fn initialize(ctx: &Pkcs11, init_string: Option<&CString>) -> cryptoki::error::Result<()> {
    match init_string {
        None => ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)),
        Some(s) => {
            let p = NonNull::new(s.as_ptr() as *mut std::ffi::c_void)
                .expect("CString pointers are never null");
            // SAFETY: `s` outlives the C_Initialize call, which only reads the
            // NUL-terminated string (modules copy what they keep).
            let args =
                unsafe { CInitializeArgs::new_with_reserved(CInitializeFlags::OS_LOCKING_OK, p) };
            ctx.initialize(args)
        }
    }
}

/// The module's function list, reached through a second handle on the same library.
pub struct RawModule {
    // Keeps the library mapped while `functions` is used.
    _library: libloading::os::unix::Library,
    functions: *const CK_FUNCTION_LIST,
}

/// Why [`RawModule::open`] failed.
#[derive(Debug, thiserror::Error)]
pub enum RawOpenError {
    /// The module is not loaded in this process (or `path` names another file).
    #[error("{path} is not the module already loaded in this process ({reason}); the raw PKCS#11 calls only reuse a loaded module and never load one")]
    NotLoaded {
        /// The path given.
        path: PathBuf,
        /// The loader's message.
        reason: String,
    },
    /// The module has no usable `C_GetFunctionList`.
    #[error("the module {path} has no usable C_GetFunctionList: {reason}")]
    FunctionList {
        /// The module.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl RawModule {
    /// Take a second handle on the module at `path`, which `cryptoki` has
    /// already loaded, and fetch its function list. The module is looked up
    /// with `RTLD_NOLOAD`: nothing is mapped and no initializer runs; a module
    /// that is not loaded yet is refused ([`RawOpenError::NotLoaded`]).
    ///
    /// # Safety
    ///
    /// `path` must be the module a live [`Pkcs11`] context loaded and
    /// initialized (`C_Initialize`), and the returned value must only be used
    /// while that context is initialized: the raw calls assume an initialized
    /// module and use its handles.
    pub(crate) unsafe fn open(path: &Path) -> Result<Self, RawOpenError> {
        use libloading::os::unix::{Library, RTLD_NOW};
        // SAFETY: RTLD_NOLOAD only returns a library that is already mapped
        // (the caller guarantees it is the initialized module), so no
        // initializer runs; the handle only bumps its reference count.
        let library =
            unsafe { Library::open(Some(path), RTLD_NOW | libc::RTLD_NOLOAD) }.map_err(|e| {
                RawOpenError::NotLoaded {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                }
            })?;
        let fl = |reason: String| RawOpenError::FunctionList {
            path: path.to_path_buf(),
            reason,
        };
        let mut functions: *mut CK_FUNCTION_LIST = ptr::null_mut();
        // SAFETY: C_GetFunctionList has this signature in every PKCS#11 module.
        let rv = unsafe {
            let get: libloading::os::unix::Symbol<
                unsafe extern "C" fn(*mut *mut CK_FUNCTION_LIST) -> CK_RV,
            > = library
                .get(b"C_GetFunctionList\0")
                .map_err(|e| fl(e.to_string()))?;
            get(&mut functions)
        };
        if rv != CKR_OK || functions.is_null() {
            return Err(fl(format!("C_GetFunctionList failed: {}", RawError(rv))));
        }
        Ok(RawModule {
            _library: library,
            functions,
        })
    }

    fn list(&self) -> &CK_FUNCTION_LIST {
        // SAFETY: checked non-null in `open`; the module keeps it alive while loaded.
        unsafe { &*self.functions }
    }

    /// Every mechanism the slot lists, including ones `cryptoki` cannot name.
    pub(crate) fn mechanism_list(&self, slot_id: u64) -> Result<Vec<CK_MECHANISM_TYPE>, RawError> {
        let f = self.list().C_GetMechanismList.ok_or(RawError(0x54))?;
        let mut count: CK_ULONG = 0;
        // SAFETY: a null list asks for the count only.
        let rv = unsafe { f(slot_id as CK_ULONG, ptr::null_mut(), &mut count) };
        if rv != CKR_OK {
            return Err(RawError(rv));
        }
        let mut list = vec![0 as CK_MECHANISM_TYPE; count as usize];
        // SAFETY: `list` has room for `count` entries.
        let rv = unsafe { f(slot_id as CK_ULONG, list.as_mut_ptr(), &mut count) };
        if rv != CKR_OK {
            return Err(RawError(rv));
        }
        list.truncate(count as usize);
        Ok(list)
    }

    /// The `CKF_*` flags of a mechanism on the slot.
    pub(crate) fn mechanism_flags(
        &self,
        slot_id: u64,
        mechanism: CK_MECHANISM_TYPE,
    ) -> Result<u64, RawError> {
        let f = self.list().C_GetMechanismInfo.ok_or(RawError(0x54))?;
        let mut info = CK_MECHANISM_INFO {
            ulMinKeySize: 0,
            ulMaxKeySize: 0,
            flags: 0,
        };
        // SAFETY: `info` is a valid out-parameter.
        let rv = unsafe { f(slot_id as CK_ULONG, mechanism, &mut info) };
        if rv != CKR_OK {
            return Err(RawError(rv));
        }
        Ok(info.flags as u64)
    }

    /// `C_WrapKey` with a mechanism `cryptoki` cannot express.
    pub fn wrap_key(
        &self,
        session: u64,
        mechanism: &RawMechanism,
        wrapping_key: u64,
        key: u64,
    ) -> Result<Vec<u8>, RawError> {
        let f = self.list().C_WrapKey.ok_or(RawError(0x54))?;
        let mut oaep = mechanism.oaep_params();
        let mut rsa_aes = CK_RSA_AES_KEY_WRAP_PARAMS {
            ulAESKeyBits: 256,
            pOAEPParams: &mut oaep,
        };
        let mut mech = CK_MECHANISM {
            mechanism: mechanism.mechanism_type(),
            pParameter: ptr::null_mut(),
            ulParameterLen: 0,
        };
        if let RawMechanism::RsaAesKeyWrap { .. } = mechanism {
            mech.pParameter = (&mut rsa_aes as *mut CK_RSA_AES_KEY_WRAP_PARAMS).cast();
            mech.ulParameterLen = std::mem::size_of::<CK_RSA_AES_KEY_WRAP_PARAMS>() as CK_ULONG;
        }
        let mut len: CK_ULONG = 0;
        // SAFETY: a null output buffer asks for the length; all pointers in
        // `mech` point to locals that outlive the call.
        let rv = unsafe {
            f(
                session as CK_ULONG,
                &mut mech,
                wrapping_key as CK_ULONG,
                key as CK_ULONG,
                ptr::null_mut(),
                &mut len,
            )
        };
        if rv != CKR_OK {
            return Err(RawError(rv));
        }
        // Some modules (NSS with CKM_AES_KEY_WRAP_KWP) under-estimate the length
        // and then answer CKR_BUFFER_TOO_SMALL: grow and try again.
        let mut out = vec![0u8; len as usize];
        for _ in 0..4 {
            let mut got: CK_ULONG = out.len() as CK_ULONG;
            // SAFETY: `out` has room for `got` bytes.
            let rv = unsafe {
                f(
                    session as CK_ULONG,
                    &mut mech,
                    wrapping_key as CK_ULONG,
                    key as CK_ULONG,
                    out.as_mut_ptr(),
                    &mut got,
                )
            };
            match rv {
                CKR_OK => {
                    out.truncate(got as usize);
                    return Ok(out);
                }
                CKR_BUFFER_TOO_SMALL => {
                    let bigger = (got as usize).max(out.len() + 16);
                    out.resize(bigger, 0);
                }
                rv => return Err(RawError(rv)),
            }
        }
        Err(RawError(CKR_BUFFER_TOO_SMALL))
    }
}

/// A wrapping mechanism only reachable through [`RawModule::wrap_key`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawMechanism {
    /// `CKM_RSA_AES_KEY_WRAP` with a 256-bit AES key and OAEP using `sha256` (else SHA-1).
    RsaAesKeyWrap {
        /// OAEP with SHA-256 and MGF1-SHA-256 rather than SHA-1.
        sha256: bool,
    },
    /// `CKM_AES_KEY_WRAP_KWP` with the default IV.
    AesKeyWrapKwp,
    /// `CKM_AES_KEY_WRAP_PAD` with the default IV. `cryptoki` could express it,
    /// but its `wrap_key` keeps the length a module first *estimated*, and NSS
    /// over-estimates for this mechanism (trailing zero bytes); this call trims
    /// to the length the module finally reports.
    AesKeyWrapPad,
}

impl RawMechanism {
    fn mechanism_type(&self) -> CK_MECHANISM_TYPE {
        match self {
            RawMechanism::RsaAesKeyWrap { .. } => CKM_RSA_AES_KEY_WRAP,
            RawMechanism::AesKeyWrapKwp => CKM_AES_KEY_WRAP_KWP,
            RawMechanism::AesKeyWrapPad => CKM_AES_KEY_WRAP_PAD,
        }
    }

    fn oaep_params(&self) -> CK_RSA_PKCS_OAEP_PARAMS {
        let sha256 = matches!(self, RawMechanism::RsaAesKeyWrap { sha256: true });
        CK_RSA_PKCS_OAEP_PARAMS {
            hashAlg: if sha256 {
                cryptoki_sys::CKM_SHA256
            } else {
                cryptoki_sys::CKM_SHA_1
            },
            mgf: if sha256 {
                cryptoki_sys::CKG_MGF1_SHA256
            } else {
                cryptoki_sys::CKG_MGF1_SHA1
            },
            source: CKZ_DATA_SPECIFIED,
            pSourceData: ptr::null_mut(),
            ulSourceDataLen: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";

    #[test]
    fn reuses_a_loaded_module_and_never_loads_one() {
        let path = Path::new(SOFTHSM);
        assert!(
            path.exists(),
            "SoftHSM2 is not installed: run scripts/install-deps.sh"
        );
        // No other unit test loads SoftHSM2: here it is not loaded yet, and
        // the raw handle must not load it.
        // SAFETY: nothing is called through the result (there is none).
        let e = unsafe { RawModule::open(path) }
            .err()
            .expect("a module that is not loaded is refused, not loaded");
        assert!(matches!(e, RawOpenError::NotLoaded { .. }), "{e}");
        assert!(e.to_string().contains("never load"), "{e}");
        // Once cryptoki has loaded it, the same path gives the same library.
        let ctx = Pkcs11::new(path).expect("cryptoki loads SoftHSM2");
        // SAFETY: only the function-list pointer is read; no PKCS#11 call is made.
        let raw = unsafe { RawModule::open(path) }.expect("the loaded module is found");
        assert!(raw.list().C_WrapKey.is_some());
        drop(raw);
        drop(ctx);
    }
}
