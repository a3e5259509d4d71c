;;; emacs_infill_test.el --- editors/emacs/infill.el against the real server  -*- lexical-binding: t; -*-

;; Run by test_emacs.py:
;;   emacs --batch -l emacs_infill_test.el -f ert-run-tests-batch-and-exit
;; Environment: INFILL_REPO, INFILL_SERVER_CMD (JSON list), INFILL_TEST_MODEL, INFILL_WORKDIR.
;; Every wait is bounded.

;;; Code:

(package-initialize)                    ; Debian's elpa-eglot lives in site-lisp/elpa
(require 'ert)
(require 'json)
(require 'python)
(add-to-list 'load-path (expand-file-name "editors/emacs" (getenv "INFILL_REPO")))
(require 'infill)

(setq infill-server-command (append (json-parse-string (getenv "INFILL_SERVER_CMD") :array-type 'list) nil)
      infill-server-options (list :model (getenv "INFILL_TEST_MODEL") :device "cpu"
                                  :maxNewTokensSingleLine 16 :maxNewTokensMultiLine 16)
      infill-delay 0.05
      eglot-sync-connect 30
      python-indent-guess-indent-offset nil)
;; The README's set-up:
(infill-eglot-setup)
(add-hook 'prog-mode-hook #'eglot-ensure)
(add-hook 'eglot-managed-mode-hook #'infill-mode-maybe)

(defconst infill-test-typed "def add(a, b):")

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
  "Empty line 3 and put point there."
  (goto-char (point-min))
  (forward-line 2)
  (delete-region (point) (line-end-position)))

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
             (new-text (plist-get (plist-get item :textEdit) :newText)))
        (should (stringp new-text))
        (completion-at-point)
        ;; the textEdit starts at the cursor here (no word before it), so the line grows by newText
        (should (equal (buffer-substring-no-properties (line-beginning-position 0) (point))
                       (concat "\n" infill-test-typed new-text)))))))

(ert-deftest infill-mode-shows-ghost-text-accepts-and-dismisses ()
  (with-current-buffer (infill-test-buffer)
    (switch-to-buffer (current-buffer))
    (infill-test-reset-line)
    (should infill-mode)                ; turned on by eglot-managed-mode-hook (infill-mode-maybe)
    ;; Typing (real commands through the command loop) schedules a request; ghost text appears.
    (execute-kbd-macro infill-test-typed)
    (should (equal (infill-test-line) infill-test-typed))
    (infill-test-wait "ghost text" #'infill-visible-p)
    (let ((suggestion (infill-current-text)))
      (should (> (length suggestion) 0))
      (should (= (overlay-start infill--overlay) (point)))
      (should (equal (substring-no-properties (overlay-get infill--overlay 'after-string))
                     suggestion))      ; nothing after point to replace here: shown as it comes
      ;; C-g dismisses it and leaves the text alone.
      (execute-kbd-macro (kbd "C-g"))
      (should-not (infill-visible-p))
      (should (equal (infill-test-line) infill-test-typed))
      ;; Retype the last character: it comes back; M-<right> takes a word, TAB the rest.
      (execute-kbd-macro (kbd "DEL :"))
      (infill-test-wait "ghost text again" #'infill-visible-p)
      (should (equal (infill-current-text) suggestion))
      (execute-kbd-macro (kbd "M-<right>"))
      (let ((after-word (buffer-substring-no-properties (line-beginning-position) (point))))
        (should (string-prefix-p infill-test-typed after-word))
        (should (> (length after-word) (length infill-test-typed)))
        (when (infill-visible-p)
          (should (equal (concat after-word (infill-current-text)) (concat infill-test-typed suggestion)))))
      (when (infill-visible-p)
        (execute-kbd-macro (kbd "TAB")))
      (should-not (infill-visible-p))
      (should (equal (buffer-substring-no-properties (line-beginning-position (- 1 (cl-count ?\n suggestion))) (point))
                     (concat infill-test-typed suggestion)))
      (should (>= (plist-get infill-stats :accepted) 1)))))

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
