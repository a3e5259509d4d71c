;;; emacs_first_seconds.el --- the README's minimal Emacs setup, first seconds  -*- lexical-binding: t; -*-

;; Run by test_first_seconds.py:
;;   emacs --batch -l emacs_first_seconds.el -f ert-run-tests-batch-and-exit
;; Environment: INFILL_REPO, INFILL_WORKDIR; infill-ls on PATH. No server options (nil), the shipped
;; model. Records what the server sends (window/showMessage, window/logMessage) and the mode line
;; word while the model loads; types while it loads, then waits without typing.

;;; Code:

(package-initialize)
(require 'ert)
(require 'python)
(add-to-list 'load-path (expand-file-name "editors/emacs" (getenv "INFILL_REPO")))

(defvar infill-test-notifications nil "(METHOD TYPE MESSAGE) the server sent, newest first.")
(defvar infill-test-lighters nil "Mode line words seen, newest first.")

;; The README's set-up, nothing more:
(require 'infill)
(infill-eglot-setup)
(add-hook 'prog-mode-hook #'eglot-ensure)
(add-hook 'eglot-managed-mode-hook #'infill-mode-maybe)

(setq eglot-sync-connect 30 python-indent-guess-indent-offset nil)
(advice-add 'eglot-handle-notification :before
            (lambda (_server method &rest params)
              (when (memq method '(window/showMessage window/logMessage))
                (push (list method (plist-get params :type) (plist-get params :message))
                      infill-test-notifications))))

(defun infill-test-wait (what predicate &optional seconds)
  (let ((deadline (+ (float-time) (or seconds 20))))
    (while (not (funcall predicate))
      (when (> (float-time) deadline)
        (error "Timed out waiting for %s" what))
      (accept-process-output nil 0.02))))

(defun infill-test-note-lighter ()
  (let ((word (infill--lighter)))
    (unless (equal word (car infill-test-lighters))
      (push word infill-test-lighters))))

(ert-deftest infill-first-seconds-with-the-minimal-setup ()
  (let ((file (expand-file-name "add.py" (getenv "INFILL_WORKDIR"))))
    (with-temp-file file (insert "import os\n\n\n"))
    (switch-to-buffer (find-file-noselect file))
    (run-hooks 'post-command-hook)          ; eglot-ensure connects after a command
    (infill-test-wait "eglot to connect" (lambda () (eglot-current-server)) 30)
    (should (eq (eglot-current-server) (car (infill--servers))))
    ;; the mode line shows infill--lighter's word
    (should (equal (cadr (assq 'infill-mode minor-mode-alist)) '(:eval (infill--lighter))))
    (infill-test-wait "infill-mode" (lambda () infill-mode) 10)
    (goto-char (point-max))
    (execute-kbd-macro "def add(a, b):")
    ;; the request for the last key is answered while the model loads: nothing shown, and the
    ;; mode line says why
    (infill-test-wait "an answer while loading"
                      (lambda () (infill-test-note-lighter) (>= (plist-get infill-stats :requests) 1)) 30)
    (should (equal infill-model-status "loading"))
    (should (member " infill[loading]" infill-test-lighters))
    (let ((answered (plist-get infill-stats :requests)))
      ;; no key pressed: once the model is ready, the buffer is asked for again at point
      (infill-test-wait "ghost text without another key"
                        (lambda () (infill-test-note-lighter) (infill-visible-p)) 80)
      (should (> (plist-get infill-stats :requests) answered)))
    (should (equal infill-model-status "ready"))
    (should (equal (car infill-test-lighters) " infill"))
    (should (equal (buffer-substring-no-properties (line-beginning-position) (point)) "def add(a, b):"))
    ;; the server warned about nothing: nil options are sent as an object ({}), settings as nothing
    (should-not (seq-filter (lambda (n) (and (numberp (nth 1 n)) (<= (nth 1 n) 2))) infill-test-notifications))))

;;; emacs_first_seconds.el ends here
