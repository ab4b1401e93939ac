import CEduHubSodium
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// Secret key files: raw bytes in a file only its owner can read.
public enum KeyFile {
  /// Writes `key` to a new file at `path`, created with mode 0600 (never readable by others).
  /// - Throws: `CryptoError.keyFile` if the file exists or cannot be written.
  public static func create(at path: String, key: SecretBytes) throws(CryptoError) {
    let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
    guard fd >= 0 else {
      throw CryptoError(.keyFile, "cannot create key file \(path): \(String(cString: strerror(errno)).lowercased())")
    }
    defer { close(fd) }
    // The mode given to open is filtered by the umask; make it exactly 0600.
    fchmod(fd, 0o600)
    let written = key.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    guard written == key.count, fsync(fd) == 0 else {
      unlink(path)
      throw CryptoError(.keyFile, "cannot write key file \(path)")
    }
  }

  /// Reads a key of exactly `length` bytes from `path`.
  /// - Throws: `CryptoError.keyFile` if the file is missing, has another size, or can be read or
  ///   written by the group or others (a leaked key is refused, not used).
  public static func read(from path: String, length: Int = 32) throws(CryptoError) -> SecretBytes {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else {
      throw CryptoError(.keyFile, "cannot open key file \(path): \(String(cString: strerror(errno)).lowercased())")
    }
    defer { close(fd) }
    var info = stat()
    guard fstat(fd, &info) == 0 else { throw CryptoError(.keyFile, "cannot stat key file \(path)") }
    guard info.st_mode & 0o077 == 0 else {
      throw CryptoError(
        .keyFile,
        "key file \(path) is accessible to other users (mode \(String(info.st_mode & 0o777, radix: 8))); chmod 600 it")
    }
    guard Int(info.st_size) == length else {
      throw CryptoError(.keyFile, "key file \(path) has \(info.st_size) bytes, not \(length)")
    }
    var failed = false
    let key = SecretBytes(count: length) { out in
      var done = 0
      while done < length {
        let n = Glibc.read(fd, out.baseAddress! + done, length - done)
        if n <= 0 {
          failed = true
          return
        }
        done += n
      }
    }
    guard !failed else { throw CryptoError(.keyFile, "cannot read key file \(path)") }
    return key
  }
}
