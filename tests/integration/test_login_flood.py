"""Login floods against the real binary: guesses are counted before the password
check (40 parallel guesses for one email get at most 5 checks), and a flood of
logins for random emails from rotating addresses (127.0.0.2-250: Linux routes all of
127/8 to lo) neither starves nor locks out a known admin logging in meanwhile."""
import collections
import secrets
import threading
import time
import unittest
from concurrent.futures import ThreadPoolExecutor

import apikit
import harness


class LoginFlood(unittest.TestCase):
    def setUp(self):
        self.env = apikit.ApiEnv()

    def tearDown(self):
        self.env.close()

    def login(self, email, password, source=None):
        return self.env.login(email, password, source)

    def test_parallel_guesses_for_one_email_get_at_most_five_checks(self):
        self.env.add_user("target@example.com", "viewer")
        with ThreadPoolExecutor(max_workers=40) as pool:
            answers = list(pool.map(lambda i: self.login("target@example.com", f"guess {i}"),
                                    range(40)))
        codes = sorted(code for code, _, _ in answers)
        checked = [doc for code, doc, _ in answers if code == 401]
        limited = [(doc, hdr) for code, doc, hdr in answers if code == 429]
        self.assertLessEqual(len(checked), 5, codes)
        self.assertGreaterEqual(len(checked), 1, codes)
        self.assertEqual(len(checked) + len(limited), 40, codes)
        for doc in checked:
            self.assertEqual(doc["error"]["code"], "invalid_credentials")
        for doc, hdr in limited:
            self.assertEqual(doc["error"]["code"], "too_many_attempts")
            self.assertGreater(int(hdr["retry-after"]), 0)
        # the right password is refused too until the window passes: it is a guess
        self.assertEqual(self.login("target@example.com", apikit.PASSWORD)[0], 429)

    def test_flood_from_many_addresses_does_not_keep_the_admin_out(self):
        # the admin has logged in from here before: a known email and address
        self.assertEqual(self.login("admin@example.com", apikit.PASSWORD)[0], 200)
        stop = threading.Event()
        flood_codes = []

        def flood(first):
            i = first
            while not stop.is_set():
                source = f"127.0.0.{2 + i % 249}"
                email = f"{secrets.token_hex(6)}@example.com"
                flood_codes.append(self.login(email, "x", source)[0])
                # and guesses at the admin's own email from elsewhere
                flood_codes.append(self.login("admin@example.com", "guess", source)[0])
                i += 8
                time.sleep(0.05)  # a flood, but the machine is shared

        threads = [threading.Thread(target=flood, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        admin = []
        try:
            time.sleep(1)  # the flood is on
            for _ in range(15):
                code, doc, _ = self.login("admin@example.com", apikit.PASSWORD)
                admin.append((code, doc.get("error") if isinstance(doc, dict) else doc))
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
        self.assertEqual([c for c, _ in admin], [200] * 15, admin)
        summary = collections.Counter(flood_codes)
        self.assertGreater(len(flood_codes), 30, summary)
        self.assertTrue(set(summary) <= {401, 429, 503}, summary)
        # guesses at the admin's email from elsewhere lock it for everyone else...
        for k in range(1, 40):
            code = self.login("admin@example.com", "guess", f"127.0.{k}.1")[0]
            if code == 429:
                break
            self.assertIn(code, (401, 503))
        self.assertEqual(code, 429)
        self.assertEqual(self.login("admin@example.com", apikit.PASSWORD, "127.0.99.1")[0],
                         429)
        # ... but not for the admin at the address they logged in from
        self.assertEqual(self.login("admin@example.com", apikit.PASSWORD)[0], 200)

    def test_failures_are_limited_per_network(self):
        # 25 wrong logins from 25 addresses of 127.0.2.0/24, 5 at a time
        def guess(i):
            while True:
                code, _, _ = self.login(f"u{i}@example.com", "x", f"127.0.2.{i + 1}")
                if code != 503:  # busy: the check did not happen, try again
                    return code
                time.sleep(0.2)

        with ThreadPoolExecutor(max_workers=5) as pool:
            codes = list(pool.map(guess, range(25)))
        self.assertEqual(codes, [401] * 25)
        # a fresh address and email of that network: refused before any check
        code, doc, hdr = self.login("editor@example.com", apikit.PASSWORD, "127.0.2.200")
        self.assertEqual((code, doc["error"]["code"]), (429, "too_many_attempts"))
        self.assertGreater(int(hdr["retry-after"]), 0)
        # another network is not affected
        self.assertEqual(self.login("editor@example.com", apikit.PASSWORD, "127.0.3.1")[0],
                         200)

if __name__ == "__main__":
    harness.main()
