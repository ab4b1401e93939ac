import Foundation

/// Search tokens for text in Chinese and other languages.
///
/// Chinese has no spaces and its names and terms are often two characters long (王芳, 学生):
/// FTS5's trigram tokenizer cannot match fewer than three characters. So a run of CJK characters
/// is indexed as its single characters and its overlapping pairs; other text as lower-case words.
/// The tokens are joined with spaces and handed to FTS5's unicode61 tokenizer, which keeps each as
/// one term. Queries are tokenized the same way: pairs for runs of two or more characters.
public enum SearchText {
  /// The tokens to index for `text`.
  public static func indexTokens(_ text: String) -> [String] {
    var tokens: [String] = []
    forEachRun(text) { run, isCJK in
      if isCJK {
        for (index, character) in run.enumerated() {
          tokens.append(String(character))
          if index + 1 < run.count { tokens.append(String(run[index]) + String(run[index + 1])) }
        }
      } else {
        tokens.append(String(run).lowercased())
      }
    }
    return tokens
  }

  /// The string to store in the FTS5 column.
  public static func indexString(_ text: String) -> String { indexTokens(text).joined(separator: " ") }

  /// An FTS5 MATCH expression for a user's query: every term must occur. Nil for a query with no
  /// searchable characters.
  public static func matchExpression(_ query: String) -> String? {
    var terms: [String] = []
    forEachRun(query) { run, isCJK in
      if isCJK {
        if run.count == 1 {
          terms.append(String(run[0]))
        } else {
          for index in 0..<(run.count - 1) { terms.append(String(run[index]) + String(run[index + 1])) }
        }
      } else {
        terms.append(String(run).lowercased())
      }
    }
    guard !terms.isEmpty else { return nil }
    // Quoted, so that no user input is read as FTS5 syntax.
    return terms.map { "\"" + $0.replacingOccurrences(of: "\"", with: "\"\"") + "\"" }.joined(separator: " AND ")
  }

  private static func forEachRun(_ text: String, _ body: ([Character], Bool) -> Void) {
    var run: [Character] = []
    var runIsCJK = false
    func flush() {
      if !run.isEmpty { body(run, runIsCJK) }
      run.removeAll()
    }
    for character in text {
      if isCJK(character) {
        if !runIsCJK { flush() }
        runIsCJK = true
        run.append(character)
      } else if character.isLetter || character.isNumber {
        if runIsCJK { flush() }
        runIsCJK = false
        run.append(character)
      } else {
        flush()
      }
    }
    flush()
  }

  static func isCJK(_ character: Character) -> Bool {
    guard let scalar = character.unicodeScalars.first else { return false }
    switch scalar.value {
    case 0x3400...0x4DBF, 0x4E00...0x9FFF, 0xF900...0xFAFF, 0x20000...0x2FA1F, 0x3040...0x30FF, 0xAC00...0xD7AF:
      return true
    default:
      return false
    }
  }
}
