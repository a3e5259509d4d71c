;;; emacs_infill_test.el --- editors/emacs/infill.el against the real server  -*- lexical-binding: t; -*-

;; Run by test_emacs.py:
;;   emacs --batch -l emacs_infill_test.el -f ert-run-tests-batch-and-exit
;; Environment: INFILL_REPO, INFILL_SERVER_CMD (JSON list), INFILL_TEST_MODEL, INFILL_WORKDIR,
;; INFILL_TEST_SUGGESTION (what the scripted checkpoint suggests after `infill-test-typed': two
;; lines).  Every wait is bounded and fails the test when it runs out.

;;; Code:

(package-initialize)                    ; Debian's elpa-eglot lives in site-lisp/elpa
(require 'ert)
(require 'json)
(require 'python)
(add-to-list 'load-path (expand-file-name "editors/emacs" (getenv "INFILL_REPO")))
(require 'infill)

(setq infill-server-command (append (json-parse-string (getenv "INFILL_SERVER_CMD") :array-type 'list) nil)
      infill-server-options (list :model (getenv "INFILL_TEST_MODEL") :device "cpu"
                                  :maxNewTokensSingleLine 16 :maxNewTokensMultiLine 16
                                  ;; the checkpoint's sampled candidates differ from its greedy one
                                  ;; (each ~9 in 10): with 5 sampled, there are others to cycle to
                                  :numCandidates 6)
      infill-delay 0.05
      eglot-sync-connect 30
      python-indent-guess-indent-offset nil)
;; The README's set-up:
(infill-eglot-setup)
(add-hook 'prog-mode-hook #'eglot-ensure)
(add-hook 'eglot-managed-mode-hook #'infill-mode-maybe)

(defconst infill-test-typed "def add(a, b):")
(defconst infill-test-suggestion (getenv "INFILL_TEST_SUGGESTION"))

(defun infill-test-wait (what predicate &optional seconds)
  "Process events until PREDICATE is non-nil, or fail naming WHAT after SECONDS."
  (let ((deadline (+ (float-time) (or seconds 20))))
    (while (not (funcall predicate))
      (when (> (float-time) deadline)
        (error "Timed out waiting for %s" what))
      (accept-process-output nil 0.02))))

(defvar infill-test-buffer nil)

(defun infill-test-buffer ()
  "add.py in python-mode, managed by eglot with infill-ls, model loaded."
  (unless (buffer-live-p infill-test-buffer)
    (let ((file (expand-file-name "add.py" (getenv "INFILL_WORKDIR"))))
      (with-temp-file file (insert "import os\n\n\n"))
      (setq infill-test-buffer (find-file-noselect file))
      (with-current-buffer infill-test-buffer
        ;; eglot-ensure (from prog-mode-hook) connects after the next command: run that hook
        (run-hooks 'post-command-hook)
        (infill-test-wait "eglot to connect" (lambda () (eglot-current-server)) 30)
        (infill-test-wait "the model to load"
                          (lambda ()
                            (let* ((stats (jsonrpc-request (eglot-current-server) :workspace/executeCommand
                                                           '(:command "infill.stats")))
                                   (model (plist-get stats :model)))
                              (when (equal (plist-get model :status) "failed")
                                (error "Model failed: %s" (plist-get model :error)))
                              (equal (plist-get model :status) "ready")))
                          60))))
  infill-test-buffer)

(defun infill-test-reset-line ()
  "Back to the file as it was (a test may have accepted lines), point on its empty line 3."
  (infill-dismiss)
  (erase-buffer)
  (insert "import os\n\n\n")
  (goto-char (point-min))
  (forward-line 2))

(defun infill-test-line ()
  (buffer-substring-no-properties (line-beginning-position) (line-end-position)))

(ert-deftest infill-eglot-completion-at-point-inserts-the-suggestion ()
  (with-current-buffer (infill-test-buffer)
    (switch-to-buffer (current-buffer))
    (infill-test-reset-line)
    (insert infill-test-typed)
    (let* ((capf (eglot-completion-at-point))
           (candidates (all-completions "" (nth 2 capf))))
      (should (eq (eglot-current-server) (car (infill--servers))))
      (should (= (length candidates) 1))
      (let* ((item (get-text-property 0 'eglot--lsp-item (car candidates)))
             (new-text (plist-get (plist-get item :textEdit) :newText))
             (start (line-beginning-position)))
        (should (equal new-text infill-test-suggestion))
        (completion-at-point)
        ;; the textEdit starts at the cursor here (no word before it), so the line grows by newText
        (should (equal (buffer-substring-no-properties start (point))
                       (concat infill-test-typed new-text)))))))

(defun infill-test-shown ()
  "The ghost text as drawn: the overlay's after-string, without properties."
  (substring-no-properties (overlay-get infill--overlay 'after-string)))

(ert-deftest infill-mode-shows-a-two-line-suggestion-accepts-and-dismisses ()
  (with-current-buffer (infill-test-buffer)
    (switch-to-buffer (current-buffer))
    (infill-test-reset-line)
    (should infill-mode)                ; turned on by eglot-managed-mode-hook (infill-mode-maybe)
    (should (string-search "\n" infill-test-suggestion))
    ;; Typing (real commands through the command loop) schedules a request; ghost text appears.
    (execute-kbd-macro infill-test-typed)
    (should (equal (infill-test-line) infill-test-typed))
    (infill-test-wait "ghost text" #'infill-visible-p)
    (should (equal (infill-current-text) infill-test-suggestion))
    (should (= (overlay-start infill--overlay) (point)))
    ;; Both lines drawn after point (nothing after point to replace here: shown as it comes).
    (should (equal (infill-test-shown) infill-test-suggestion))
    ;; C-g dismisses it and leaves the text alone.
    (execute-kbd-macro (kbd "C-g"))
    (should-not (infill-visible-p))
    (should (equal (infill-test-line) infill-test-typed))
    ;; Retype the last character: it comes back.
    (execute-kbd-macro (kbd "DEL :"))
    (infill-test-wait "ghost text again" #'infill-visible-p)
    (should (equal (infill-test-shown) infill-test-suggestion))
    ;; M-<right> takes its first word ("  #"); the rest stays drawn, still two lines.
    (execute-kbd-macro (kbd "M-<right>"))
    (let* ((word (progn (string-match "\\`[[:space:]]*[^[:alnum:]_[:space:]]+" infill-test-suggestion)
                        (match-string 0 infill-test-suggestion)))
           (rest (substring infill-test-suggestion (length word))))
      (should (equal (infill-test-line) (concat infill-test-typed word)))
      (should (infill-visible-p))
      (should (equal (infill-test-shown) rest))
      (should (string-search "\n" rest))
      ;; TAB inserts exactly what was shown, over two lines, and leaves point after it.
      (let ((accepted (plist-get infill-stats :accepted)))
        (execute-kbd-macro (kbd "TAB"))
        (should-not (infill-visible-p))
        (should (equal (buffer-substring-no-properties (line-beginning-position 0) (point))
                       (concat infill-test-typed infill-test-suggestion)))
        (should (equal (infill-test-line) (car (last (split-string infill-test-suggestion "\n")))))
        (should (= (point) (line-end-position)))
        (should (= (plist-get infill-stats :accepted) (1+ accepted)))))
    ;; The accepted second line goes, for the next test.
    (delete-region (line-beginning-position 0) (line-end-position))))

(ert-deftest infill-next-and-previous-cycle-through-the-candidates ()
  (with-current-buffer (infill-test-buffer)
    (switch-to-buffer (current-buffer))
    (infill-test-reset-line)
    (execute-kbd-macro infill-test-typed)
    (infill-test-wait "ghost text" #'infill-visible-p)
    (should (equal (infill-current-text) infill-test-suggestion))
    ;; M-] with one candidate known asks for several (Invoked) and shows the second.
    (execute-kbd-macro (kbd "M-]"))
    (infill-test-wait "the other candidates" (lambda () (> (length infill--candidates) 1)))
    (let ((texts (mapcar #'car infill--candidates)))
      (should (equal (car texts) infill-test-suggestion)) ; the shown one comes first
      (should (equal texts (cl-remove-duplicates texts :test #'equal :from-end t)))
      (should (= infill--index 1))
      (should (equal (infill-test-shown) (nth 1 texts)))
      (should-not (equal (nth 1 texts) infill-test-suggestion))
      ;; M-[ goes back to the first, M-[ again wraps round to the last, M-] wraps to the first.
      (execute-kbd-macro (kbd "M-["))
      (should (equal (infill-test-shown) (nth 0 texts)))
      (execute-kbd-macro (kbd "M-["))
      (should (equal (infill-test-shown) (car (last texts))))
      (execute-kbd-macro (kbd "M-]"))
      (should (equal (infill-test-shown) (nth 0 texts)))
      (execute-kbd-macro (kbd "M-] TAB"))  ; TAB takes the candidate shown, not the first
      (should-not (infill-visible-p))
      (should (equal (infill-test-line) (concat infill-test-typed (nth 1 texts)))))))

(ert-deftest infill-show-stats-reports-the-counters ()
  (with-current-buffer (infill-test-buffer)
    (switch-to-buffer (current-buffer))
    (infill-test-reset-line)
    (cl-flet ((counts ()
                (let ((text (infill-show-stats))
                      (re (concat "\\`infill: requests \\([0-9]+\\), shown \\([0-9]+\\), accepted \\([0-9]+\\), "
                                  "errors \\([0-9]+\\), last latency \\([0-9]+\\) ms\\'")))
                  (should (string-match re text))
                  (mapcar (lambda (n) (string-to-number (match-string n text))) '(1 2 3 4)))))
      (let ((before (counts)))
        (should (equal before (list (plist-get infill-stats :requests) (plist-get infill-stats :shown)
                                    (plist-get infill-stats :accepted) (plist-get infill-stats :errors))))
        ;; One suggestion asked for, shown and accepted: each count goes up by one.
        (execute-kbd-macro infill-test-typed)
        (infill-test-wait "ghost text" #'infill-visible-p)
        (execute-kbd-macro (kbd "TAB"))
        (should (equal (counts) (list (1+ (nth 0 before)) (1+ (nth 1 before)) (1+ (nth 2 before))
                                      (nth 3 before))))))))

(ert-deftest infill-modes-chooses-where-eglot-uses-infill-ls ()
  (require 'js)                         ; a mode's parent is known once its file is loaded
  (let ((eglot-server-programs eglot-server-programs) (infill-modes infill-modes))
    (cl-flet ((contact-for (mode) (nth 2 (eglot--lookup-mode mode))))
      ;; The default, prog-mode: every programming mode, ahead of eglot's own servers.
      (should (eq (contact-for 'python-mode) #'infill--contact))
      (should (eq (contact-for 'js-mode) #'infill--contact))
      (should-not (eq (contact-for 'text-mode) #'infill--contact))
      ;; Only Python: JavaScript goes back to eglot's own server for it.
      (setq infill-modes '(python-mode))
      (infill-eglot-setup)
      (should (eq (contact-for 'python-mode) #'infill--contact))
      (should (contact-for 'js-mode))
      (should-not (eq (contact-for 'js-mode) #'infill--contact))
      (should (= 1 (cl-count #'infill--contact eglot-server-programs :key #'cdr)))))
  ;; What the buffer of a mode in the list gets: the server that is running here.
  (with-current-buffer (infill-test-buffer)
    (should (eq (eglot-current-server) (car (infill--servers))))
    (should (equal (seq-take (nth 3 (eglot--guess-contact)) (length infill-server-command))
                   infill-server-command))))

(ert-deftest infill-moving-point-clears-the-suggestion ()
  (with-current-buffer (infill-test-buffer)
    (switch-to-buffer (current-buffer))
    (infill-test-reset-line)
    (infill-mode 1)
    (execute-kbd-macro infill-test-typed)
    (infill-test-wait "ghost text" #'infill-visible-p)
    (execute-kbd-macro (kbd "C-b"))
    (should-not (infill-visible-p))
    (should (equal (infill-test-line) infill-test-typed))))

;; A plain request, as infill-mode makes it, returns what it shows.
(defun infill-test-ask ()
  (let ((answered nil) (found nil))
    (infill-request 2 (lambda (candidates) (setq answered t found candidates)))
    (infill-test-wait "an answer" (lambda () answered))
    found))

(ert-deftest infill-set-option-reaches-the-running-server ()
  (with-current-buffer (infill-test-buffer)
    (switch-to-buffer (current-buffer))
    (infill-test-reset-line)
    (insert infill-test-typed)
    (unwind-protect
        (progn
          (infill-set-option :languages ["rust"])
          (should-not (infill-test-ask))
          (should-not (infill-visible-p)))
      (infill-set-option :languages ["*"]))
    (should (infill-test-ask))
    (should (infill-visible-p))
    (infill-dismiss)))

;; Commands run through the command loop (execute-kbd-macro), so post-command-hook runs.
(defun infill-test-prefetches ()
  "The server's count of infill/prefetch notifications received."
  (plist-get (plist-get (jsonrpc-request (with-current-buffer infill-test-buffer (eglot-current-server))
                                         :workspace/executeCommand
                                         '(:command "infill.stats"))
                        :prefetch)
             :received))

(defun infill-test-prefetches-after-pause (&optional expect-more-than)
  "The count once it exceeds EXPECT-MORE-THAN (up to 3 s), or after a pause past the delay."
  (when expect-more-than
    (ignore-errors (infill-test-wait "a prefetch" (lambda () (> (infill-test-prefetches) expect-more-than)) 3)))
  (sleep-for (* 2 infill-prefetch-delay))
  (infill-test-prefetches))

(ert-deftest infill-prefetch-is-sent-once-where-point-comes-to-rest-not-for-typing ()
  (with-current-buffer (infill-test-buffer)
    (switch-to-buffer (current-buffer))
    (infill-test-reset-line)
    (let ((start (infill-test-prefetches-after-pause)))
      (execute-kbd-macro infill-test-typed)   ; typing: no prefetch
      (should (= (infill-test-prefetches-after-pause) start))
      (execute-kbd-macro (kbd "M-<"))         ; a motion: one
      (should (= (infill-test-prefetches-after-pause start) (+ start 1)))
      (execute-kbd-macro (kbd "C-n C-p"))     ; away and back within the delay: the place just sent
      (should (= (infill-test-prefetches-after-pause) (+ start 1)))
      ;; A motion, then another buffer before the delay is over: none; back to this one: one.
      (execute-kbd-macro (kbd "C-e"))
      (let ((this-command 'switch-to-buffer)) ; as the command loop runs it
        (switch-to-buffer (get-buffer-create "*scratch*"))
        (run-hooks 'post-command-hook)
        (should (= (infill-test-prefetches-after-pause) (+ start 1)))
        (switch-to-buffer infill-test-buffer)
        (run-hooks 'post-command-hook))
      (should (= (infill-test-prefetches-after-pause (+ start 1)) (+ start 2)))
      (let ((infill-prefetch nil))            ; turned off: none
        (execute-kbd-macro (kbd "M-<"))
        (should (= (infill-test-prefetches-after-pause) (+ start 2)))))))

;;; emacs_infill_test.el ends here
