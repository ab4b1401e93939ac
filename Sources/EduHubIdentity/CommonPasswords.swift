/// Passwords too common to accept: the most frequent entries of public breach lists (Chinese and
/// international), folded to lower case. Checked case-insensitively.
enum CommonPasswords {
  static let list: Set<String> = [
    "123456", "123456789", "12345678", "password", "qwerty123", "qwerty", "111111", "12345",
    "123123", "1234567890", "1234567", "000000", "abc123", "password1", "iloveyou", "1q2w3e4r",
    "1qaz2wsx", "qwertyuiop", "123321", "654321", "666666", "888888", "112233", "121212",
    "7777777", "987654321", "123654", "a123456", "a12345678", "aa123456", "woaini1314", "woaini520",
    "5201314", "520520", "1314520", "qq123456", "123qwe", "zxcvbnm", "asdfghjkl", "admin",
    "admin123", "administrator", "root", "toor", "passw0rd", "p@ssw0rd", "p@ssword", "welcome",
    "welcome1", "letmein", "monkey", "dragon", "sunshine", "princess", "football", "baseball",
    "master", "shadow", "superman", "batman", "trustno1", "michael", "jennifer", "charlie",
    "hello123", "hello", "world", "helloworld", "11111111", "88888888", "00000000", "12341234",
    "11223344", "abcd1234", "abcdefg", "abcdefgh", "1234qwer", "q1w2e3r4", "q1w2e3r4t5", "1q2w3e4r5t",
    "zaq12wsx", "qazwsx", "qazwsxedc", "147258369", "159753", "159357", "147258", "789456123",
    "741852963", "963852741", "123456a", "123456aa", "123456abc", "123abc", "12qwaszx", "password123",
    "password12", "iloveyou1", "changeme", "changeme123", "default", "guest", "guest123", "test",
    "test123", "test1234", "user", "user123", "login", "login123", "secret", "secret123",
    "starwars", "whatever", "freedom", "mustang", "access", "access123", "computer", "internet",
    "samsung", "google", "apple", "huawei", "xiaomi", "china123", "beijing", "shanghai",
    "dazhou", "sichuan", "aaaaaaaa", "abcabcabc", "a1b2c3d4", "a1234567", "aa12345678", "abc12345",
    "abc123456", "asd123456", "asdf1234", "zxc123456", "qwe123456", "woaini123", "woaini", "woaini1",
    "wodemima", "mima123", "mima123456", "5211314", "1314521", "12344321", "11112222", "123456789a",
    "888888888", "666666666", "999999999", "77777777", "99999999", "66666666", "55555555", "22222222",
    "33333333", "44444444", "qwertyui", "asdfasdf", "zxcvzxcv", "1qazxsw2", "2wsx3edc", "!qaz2wsx",
    "1qaz@wsx", "p@ssw0rd1", "password!", "password@123", "admin@123", "admin1234", "root123", "root1234",
    "system", "manager", "teacher", "student", "school", "education", "eduhub", "eduhub123",
  ]
}
