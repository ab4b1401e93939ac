import EduHubCrypto
import Foundation
import Testing

#if canImport(Glibc)
  import Glibc
#endif

@Suite("libsodium primitives")
struct CryptoTests {
  @Test("AEAD round-trips and binds its associated data")
  func aead() throws {
    let key = AEAD.makeKey()
    let message = Array("王芳 51170220100101001X".utf8)
    let box = try AEAD.seal(message, associatedData: [1, 2, 3], key: key)
    #expect(box.count == message.count + AEAD.nonceBytes + AEAD.tagBytes)
    #expect(try AEAD.open(box, associatedData: [1, 2, 3], key: key) == message)
    // Fresh nonce every time: the same message never seals the same way.
    #expect(try AEAD.seal(message, associatedData: [1, 2, 3], key: key) != box)
    #expect(throws: CryptoError.self) { try AEAD.open(box, associatedData: [1, 2, 4], key: key) }
    #expect(throws: CryptoError.self) { try AEAD.open(box, associatedData: [1, 2, 3], key: AEAD.makeKey()) }
    for index in [0, AEAD.nonceBytes, box.count - 1] {
      var tampered = box
      tampered[index] ^= 0x01
      #expect(throws: CryptoError.self) { try AEAD.open(tampered, associatedData: [1, 2, 3], key: key) }
    }
    #expect(throws: CryptoError.self) { try AEAD.open([1, 2, 3], key: key) }
  }

  @Test("Argon2id hashes verify, reject wrong passwords and report weak limits")
  func passwordHash() throws {
    let hash = try PasswordHash.hash("correct horse battery staple", limits: .owaspMinimum)
    #expect(hash.hasPrefix("$argon2id$"))
    #expect(PasswordHash.verify("correct horse battery staple", hash: hash))
    #expect(!PasswordHash.verify("correct horse battery stapler", hash: hash))
    #expect(!PasswordHash.verify("x", hash: "not a hash"))
    #expect(PasswordHash.needsRehash(hash, limits: .interactive))
    #expect(!PasswordHash.needsRehash(hash, limits: .owaspMinimum))
  }

  @Test("Argon2id key derivation is deterministic per salt")
  func deriveKey() throws {
    let salt = Random.bytes(PasswordHash.saltBytes)
    let a = try PasswordHash.deriveKey(from: "passphrase", salt: salt, limits: .owaspMinimum)
    let b = try PasswordHash.deriveKey(from: "passphrase", salt: salt, limits: .owaspMinimum)
    let c = try PasswordHash.deriveKey(from: "passphrase", salt: Random.bytes(PasswordHash.saltBytes), limits: .owaspMinimum)
    #expect(a.isEqual(to: b))
    #expect(!a.isEqual(to: c))
    #expect(throws: CryptoError.self) { try PasswordHash.deriveKey(from: "p", salt: [1], limits: .owaspMinimum) }
  }

  @Test("Ed25519 signs and verifies; a changed message or key fails")
  func signing() throws {
    let key = SigningKey()
    let message = Array("token payload".utf8)
    let signature = key.sign(message)
    #expect(SigningKey.verify(signature: signature, of: message, publicKey: key.publicKey))
    #expect(!SigningKey.verify(signature: signature, of: message + [0], publicKey: key.publicKey))
    #expect(!SigningKey.verify(signature: signature, of: message, publicKey: SigningKey().publicKey))
    #expect(!SigningKey.verify(signature: [1, 2], of: message, publicKey: key.publicKey))
    let seed = SecretBytes(randomCount: SigningKey.seedBytes)
    #expect(try SigningKey(seed: seed).publicKey == SigningKey(seed: seed).publicKey)
  }

  @Test("keyed BLAKE2b is stable per key and differs across keys")
  func keyedHash() throws {
    let k1 = SecretBytes(randomCount: KeyedHash.keyBytes)
    let k2 = SecretBytes(randomCount: KeyedHash.keyBytes)
    let id = Array("51170220100101001X".utf8)
    #expect(try KeyedHash.hash(id, key: k1) == KeyedHash.hash(id, key: k1))
    #expect(try KeyedHash.hash(id, key: k1) != KeyedHash.hash(id, key: k2))
    #expect(KeyedHash.digest(id).count == 32)
    #expect(throws: CryptoError.self) { try KeyedHash.hash(id, key: k1, length: 8) }
  }

  @Test("constant-time comparison")
  func constantTime() {
    #expect(ConstantTime.equals([1, 2, 3], [1, 2, 3]))
    #expect(!ConstantTime.equals([1, 2, 3], [1, 2, 4]))
    #expect(!ConstantTime.equals([1, 2, 3], [1, 2]))
    #expect(ConstantTime.equals([], []))
  }

  @Test("secret bytes never print their content")
  func secretDescription() {
    let secret = SecretBytes([0x41, 0x42, 0x43])
    #expect(secret.description == "SecretBytes(3 bytes)")
    #expect(!"\(secret)".contains("ABC"))
  }

  @Test("key files are created 0600 and refused when others can read them")
  func keyFiles() throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("eduhub-keys-\(UUID())")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    let path = directory.appendingPathComponent("node.key").path
    let key = AEAD.makeKey()
    let previous = umask(0)
    defer { umask(previous) }
    try KeyFile.create(at: path, key: key)
    var info = stat()
    stat(path, &info)
    #expect(info.st_mode & 0o777 == 0o600)
    #expect(try KeyFile.read(from: path).isEqual(to: key))
    #expect(throws: CryptoError.self) { try KeyFile.create(at: path, key: key) }
    chmod(path, 0o644)
    do {
      _ = try KeyFile.read(from: path)
      Issue.record("a world-readable key file was accepted")
    } catch {
      #expect(error.message.contains("accessible to other users"))
    }
    chmod(path, 0o600)
    #expect(throws: CryptoError.self) { try KeyFile.read(from: path, length: 64) }
    #expect(throws: CryptoError.self) { try KeyFile.read(from: directory.appendingPathComponent("missing").path) }
  }
}
