;;; infill.el --- AI code completion from infill-ls, through eglot  -*- lexical-binding: t; -*-

;; Version: 0.1.0
;; Package-Requires: ((emacs "28.1") (eglot "1.9"))
;; Keywords: tools, completion
;; SPDX-License-Identifier: Apache-2.0

;;; Commentary:

;; Two ways to get suggestions from the infill-ls language server:
;;
;; 1. `infill-eglot-setup' registers `infill-ls serve' with eglot for
;;    `infill-modes' (all programming modes by default), sending
;;    `infill-server-options' as initializationOptions.  `M-x eglot' (or
;;    `eglot-ensure') starts it, and `completion-at-point' (C-M-i) offers the
;;    model's suggestion.
;;
;; 2. `infill-mode', a minor mode for buffers that eglot manages with
;;    infill-ls: while you type, the suggestion appears after point as grey
;;    ghost text (an overlay).  TAB accepts it, M-<right> accepts one word,
;;    M-] / M-[ cycle through candidates, C-g dismisses it; moving away or
;;    typing something else clears it.  eglot 1.9 has no inline completion, so
;;    infill-mode requests textDocument/inlineCompletion on eglot's connection.
;;    When point comes to rest after a motion or a buffer switch (not after
;;    typing), it also sends infill/prefetch so the server prepares that place
;;    (`infill-prefetch').
;;
;; Minimal set-up:
;;
;;   (require 'infill)
;;   (setq infill-server-options '(:model "/path/to/model" :device "cpu"))
;;   (infill-eglot-setup)
;;   (add-hook 'prog-mode-hook #'eglot-ensure)
;;   (add-hook 'eglot-managed-mode-hook #'infill-mode-maybe)

;;; Code:

(require 'cl-lib)
(require 'eglot)
(require 'jsonrpc)
(require 'subr-x)

(defgroup infill nil
  "AI code completion from the infill-ls language server."
  :group 'tools
  :prefix "infill-")

(defcustom infill-server-command nil
  "Command that starts the server, e.g. (\"/path/to/infill-ls\" \"serve\").
nil: `infill-ls serve' from PATH, or from a .venv or venv folder above the file."
  :type '(choice (const :tag "Find infill-ls" nil) (repeat string)))

(defcustom infill-server-options nil
  "Server options, a plist sent as initializationOptions.
Keys are the server's camelCase option names, e.g.
  (:model \"/models/starcoder\" :device \"cpu\" :maxNewTokensMultiLine 64)
nil: the server's defaults (its small shipped model)."
  :type 'plist)

(defcustom infill-modes '(prog-mode)
  "Major modes (and modes derived from them) that eglot serves with infill-ls.
eglot runs one server per buffer: these modes use infill-ls instead of
another language server."
  :type '(repeat symbol))

(defcustom infill-delay 0.15
  "Seconds after the last keystroke before `infill-mode' asks for a suggestion."
  :type 'number)

(defcustom infill-request-timeout 10
  "Seconds to wait for a suggestion before giving up on it."
  :type 'number)

(defcustom infill-prefetch t
  "Non-nil: tell the server where point comes to rest, so it prepares that place.
After a command that moved point without changing the text (a motion, a
search, a jump, a click) or switched to the buffer, and
`infill-prefetch-delay' seconds without another command, `infill-mode'
sends an infill/prefetch notification: the server then reads that part of
the file in the background, and the first suggestion there comes quicker."
  :type 'boolean)

(defcustom infill-prefetch-delay 0.2
  "Seconds point must stay put before `infill-mode' sends infill/prefetch."
  :type 'number)

(defface infill-ghost-face '((t :inherit shadow))
  "Face of the suggestion shown after point.")

;;;; Server registration (completion-at-point through eglot)

(defun infill--server-command ()
  "The command that starts the server, or nil if it cannot be found."
  (or infill-server-command
      (when-let ((exe (executable-find "infill-ls")))
        (list exe "serve"))
      (cl-loop for venv in '(".venv" "venv")
               for dir = (locate-dominating-file default-directory
                                                 (expand-file-name "bin/infill-ls" venv))
               when dir return (list (expand-file-name (concat venv "/bin/infill-ls") dir) "serve"))))

(defun infill--contact (&optional _interactive)
  "eglot CONTACT for infill-ls: the command plus :initializationOptions."
  (let ((command (infill--server-command)))
    (unless command
      (user-error "infill: infill-ls not found on PATH or in a .venv; set `infill-server-command'"))
    (append command (list :initializationOptions
                          (lambda (_server) (or infill-server-options eglot--{}))))))

;;;###autoload
(defun infill-eglot-setup ()
  "Make eglot use infill-ls for `infill-modes'."
  (interactive)
  (setq eglot-server-programs
        (cons (cons infill-modes #'infill--contact)
              (cl-remove #'infill--contact eglot-server-programs :key #'cdr))))

(defun infill-set-option (name value)
  "Set server option NAME (a keyword, e.g. :maxNewTokensMultiLine) to VALUE now.
Sent to running servers as workspace/didChangeConfiguration.  Interactively,
VALUE is read as Lisp: 32, \"cpu\", [\"python\" \"rust\"]."
  (interactive (list (intern (concat ":" (string-remove-prefix ":" (read-string "infill option: "))))
                     (read-minibuffer "Value: ")))
  (setq infill-server-options (plist-put (copy-sequence infill-server-options) name value))
  (dolist (server (infill--servers))
    (jsonrpc-notify server :workspace/didChangeConfiguration
                    (list :settings (list :infill infill-server-options)))
    (infill--watch-model server)))  ; a new model loads in the background

(defun infill--servers ()
  "Running eglot servers that are infill-ls."
  (cl-remove-if-not
   (lambda (server)
     (let ((info (ignore-errors (eglot--server-info server))))
       (and info (string-prefix-p "infill" (or (plist-get info :name) "")))))
   (apply #'append (hash-table-values eglot--servers-by-project))))

;;;; Ghost text (infill-mode)

(defvar-local infill--overlay nil "Overlay showing the suggestion.")
(defvar-local infill--candidates nil "Suggestions: list of (TEXT REPLACE-END ITEM).")
(defvar-local infill--index 0 "Index of the shown candidate.")
(defvar-local infill--position nil "Point where the suggestion was made.")
(defvar-local infill--tick nil "`buffer-chars-modified-tick' when it was made.")
(defvar-local infill--timer nil "Pending request timer.")
(defvar-local infill--request-id 0 "Sequence number of the latest request.")
(defvar-local infill--active nil "Non-nil while a suggestion is shown (enables `infill-active-map').")

(defvar infill-stats (list :requests 0 :shown 0 :accepted 0 :errors 0 :last-latency-ms nil)
  "Counters since Emacs started.")

(defvar infill-active-map
  (let ((map (make-sparse-keymap)))
    (define-key map (kbd "TAB") #'infill-accept)
    (define-key map (kbd "<tab>") #'infill-accept)
    (define-key map (kbd "M-<right>") #'infill-accept-word)
    (define-key map (kbd "M-]") #'infill-next)
    (define-key map (kbd "M-[") #'infill-previous)
    (define-key map (kbd "C-g") #'infill-dismiss)
    map)
  "Keys active while a suggestion is shown.")

(add-to-list 'minor-mode-map-alist (cons 'infill--active infill-active-map))

(defun infill--stat-add (key n)
  (setq infill-stats (plist-put infill-stats key (+ n (or (plist-get infill-stats key) 0)))))

(defun infill-visible-p ()
  "Non-nil when a suggestion is shown."
  (and infill--overlay (overlay-buffer infill--overlay) t))

(defun infill-current-text ()
  "The text accepting the suggestion would insert, or nil."
  (car (nth infill--index infill--candidates)))

(defun infill-dismiss ()
  "Hide the suggestion."
  (interactive)
  (when infill--overlay
    (delete-overlay infill--overlay))
  (setq infill--overlay nil infill--candidates nil infill--index 0 infill--active nil)
  (cl-incf infill--request-id))       ; answers in flight are now stale

(defun infill--draw ()
  (when infill--overlay
    (delete-overlay infill--overlay))
  (pcase-let ((`(,text ,replace-end ,_) (nth infill--index infill--candidates)))
    (if (not text)
        (setq infill--overlay nil infill--active nil)
      (let* ((replaced (buffer-substring-no-properties (point) replace-end))
             (shown (if (and (not (string-empty-p replaced))
                             (not (string-search "\n" text))
                             (string-suffix-p replaced text))
                        (substring text 0 (- (length text) (length replaced)))
                      text))
             (ghost (propertize shown 'face 'infill-ghost-face)))
        (unless (string-empty-p ghost)
          (put-text-property 0 1 'cursor t ghost))
        (setq infill--overlay (make-overlay (point) (point) nil nil t))
        (overlay-put infill--overlay 'after-string ghost)
        (overlay-put infill--overlay 'priority 1000)
        (setq infill--active t)))))

(defun infill--item-candidate (item)
  "(TEXT REPLACE-END ITEM) for LSP inline completion ITEM at point, or nil."
  (let* ((insert (plist-get item :insertText))
         (text (if (stringp insert) insert (plist-get insert :value)))
         (range (plist-get item :range))
         (start (point)) (end (point)))
    (when range
      (setq start (eglot--lsp-position-to-point (plist-get range :start))
            end (eglot--lsp-position-to-point (plist-get range :end))))
    (when (and (stringp text) (<= start (point) end)
               (= (line-number-at-pos start) (line-number-at-pos end)))
      (let ((typed (buffer-substring-no-properties start (point))))
        (when (and (string-prefix-p typed text) (> (length text) (length typed)))
          (list (substring text (length typed)) end item))))))

(defun infill--show (items)
  (setq infill--candidates (delq nil (mapcar #'infill--item-candidate items))
        infill--index 0
        infill--position (point)
        infill--tick (buffer-chars-modified-tick))
  (when infill--candidates
    (infill--stat-add :shown 1))
  (infill--draw))

(defun infill--server ()
  (and (bound-and-true-p eglot--managed-mode) (eglot-current-server)))

(defun infill-request (&optional trigger-kind callback)
  "Ask the server for suggestions at point; TRIGGER-KIND 1 invoked, 2 automatic.
CALLBACK, if given, is called with the candidates once they are shown."
  (interactive (list 1))
  (let ((server (infill--server))
        (buffer (current-buffer))
        (id (cl-incf infill--request-id))
        (started (float-time)))
    (if (not server)
        (when (called-interactively-p 'any)
          (user-error "infill: no eglot server in this buffer (M-x eglot)"))
      (eglot--signal-textDocument/didChange)
      (let ((point (point)) (tick (buffer-chars-modified-tick)))
        (jsonrpc-async-request
         server :textDocument/inlineCompletion
         (append (eglot--TextDocumentPositionParams)
                 (list :context (list :triggerKind (or trigger-kind 2))))
         :timeout infill-request-timeout
         :success-fn
         (lambda (result)
           (when (buffer-live-p buffer)
             (with-current-buffer buffer
               (infill--stat-add :requests 1)
               (setq infill-stats (plist-put infill-stats :last-latency-ms
                                             (round (* 1000 (- (float-time) started)))))
               (when (and (= id infill--request-id) (= point (point))
                          (= tick (buffer-chars-modified-tick)))
                 (infill--show (append (if (and (listp result) (plist-member result :items))
                                           (plist-get result :items)
                                         result)
                                       nil))
                 (when callback (funcall callback infill--candidates))))))
         :error-fn
         (lambda (err)
           (infill--stat-add :errors 1)
           (unless (eq (plist-get err :code) -32800) ; cancelled
             (message "infill: %s" (or (plist-get err :message) err))))
         :timeout-fn (lambda () (infill--stat-add :errors 1)))))))

(defun infill--schedule ()
  "Ask for a suggestion after `infill-delay', if point and text are still as now."
  (when infill--timer
    (cancel-timer infill--timer))
  (let ((buffer (current-buffer)) (point (point)) (tick (buffer-chars-modified-tick)))
    (setq infill--timer
          (run-with-timer infill-delay nil
                          (lambda ()
                            (when (and (buffer-live-p buffer) (eq buffer (current-buffer)))
                              (with-current-buffer buffer
                                (setq infill--timer nil)
                                (when (and (= point (point)) (= tick (buffer-chars-modified-tick)))
                                  (infill-request 2)))))))))

(defun infill--insert (text replace-end)
  (delete-region (point) replace-end)
  (insert text))

(defun infill-accept ()
  "Insert the shown suggestion; without one, do what TAB would do."
  (interactive)
  (pcase-let ((`(,text ,replace-end ,_) (nth infill--index infill--candidates)))
    (if (not (and text (infill-visible-p)))
        (infill--fallback)
      (infill-dismiss)
      (infill--insert text replace-end)
      (infill--stat-add :accepted 1)
      (setq infill--tick (buffer-chars-modified-tick) infill--position (point)))))

(defun infill--fallback ()
  "Run what the key would do without `infill-active-map'."
  (let* ((infill--active nil)
         (command (key-binding (this-command-keys-vector) t)))
    (when (commandp command)
      (call-interactively command))))

(defun infill-accept-word ()
  "Insert the suggestion's next word and keep showing the rest."
  (interactive)
  (pcase-let ((`(,text ,replace-end ,item) (nth infill--index infill--candidates)))
    (if (not (and text (infill-visible-p)))
        (infill--fallback)
      (let* ((word (if (string-match "\\`\\(?:[[:space:]]*[[:alnum:]_]+\\|[[:space:]]*[^[:alnum:]_[:space:]]+\\|[[:space:]]+\\)" text)
                       (match-string 0 text)
                     text))
             (rest (substring text (length word)))
             (end-offset (- replace-end (point))))
        (infill-dismiss)
        (insert word)
        (if (string-empty-p rest)
            (infill--stat-add :accepted 1)
          (setq infill--candidates (list (list rest (+ (point) end-offset) item))
                infill--index 0)
          (infill--draw))
        (setq infill--tick (buffer-chars-modified-tick) infill--position (point))))))

(defun infill-next (&optional count)
  "Show the next candidate (COUNT back if negative).
With only one candidate known, ask the server for several first."
  (interactive "p")
  (let ((count (or count 1)))
    (if (> (length infill--candidates) 1)
        (progn (setq infill--index (mod (+ infill--index count) (length infill--candidates)))
               (infill--draw))
      (let ((shown (infill-current-text)))
        (infill-request 1 (lambda (candidates)
                            (when (and shown (> (length candidates) 1)
                                       (equal (caar candidates) shown))
                              (setq infill--index (mod count (length candidates)))
                              (infill--draw))))))))

(defun infill-previous ()
  "Show the previous candidate."
  (interactive)
  (infill-next -1))

(defun infill--typed-through ()
  "If what was typed since the suggestion is its start, keep showing the rest."
  (let ((text (infill-current-text)))
    (when (and text infill--position (> (point) infill--position)
               (= (line-number-at-pos (point)) (line-number-at-pos infill--position)))
      (let ((typed (buffer-substring-no-properties infill--position (point))))
        (when (and (string-prefix-p typed text) (< (length typed) (length text)))
          (pcase-let ((`(,_ ,replace-end ,item) (nth infill--index infill--candidates)))
            (setq infill--candidates (list (list (substring text (length typed))
                                                 (max (point) (+ replace-end (length typed)))
                                                 item))
                  infill--index 0 infill--position (point)
                  infill--tick (buffer-chars-modified-tick))
            (infill--draw)
            t))))))

(defconst infill--own-commands
  '(infill-accept infill-accept-word infill-next infill-previous infill-dismiss infill-request))

(defun infill--post-command ()
  "Clear a stale suggestion and schedule a new one after edits."
  (unless (memq this-command infill--own-commands)
    (let ((changed (not (eql infill--tick (buffer-chars-modified-tick))))
          (moved (not (eql infill--position (point)))))
      (cond
       ((and changed (infill--typed-through)))
       (changed
        (infill-dismiss)
        (setq infill--tick (buffer-chars-modified-tick) infill--position (point))
        (infill--schedule))
       (moved
        (infill-dismiss)
        (setq infill--position (point)))))))

;;;; Prefetch: where point comes to rest

;; After each command in an `infill-mode' buffer: if the command moved point (or
;; switched to this buffer) and did not change the text, arm a timer; when it
;; fires with point, text and buffer as they were, send infill/prefetch (once per
;; place: buffer, modification tick, point).  A command that edits cancels it,
;; so typing never sends one.

(defvar infill-mode)                    ; defined below
(defvar infill--prefetch-timer nil "Pending infill/prefetch timer.")
(defvar infill--prefetch-sent nil "(BUFFER TICK POINT) of the last infill/prefetch sent.")
(defvar infill--prefetch-buffer nil "Buffer current after the last command in an `infill-mode' buffer.")
(defvar-local infill--prefetch-tick nil "`buffer-chars-modified-tick' after the last command here.")
(defvar-local infill--prefetch-point nil "Point after the last command here.")
(defvar-local infill--prefetch-display-count nil "`buffer-display-count' after the last command here.")

(defun infill--prefetch-cancel ()
  (when infill--prefetch-timer
    (cancel-timer infill--prefetch-timer)
    (setq infill--prefetch-timer nil)))

(defun infill--prefetch-send (buffer tick point)
  "Send infill/prefetch at POINT in BUFFER if nothing changed since TICK."
  (setq infill--prefetch-timer nil)
  (when (and (buffer-live-p buffer) (eq buffer (window-buffer (selected-window))))
    (with-current-buffer buffer
      (let ((server (infill--server))
            (place (list buffer tick point)))
        (when (and server infill-mode infill-prefetch (not buffer-read-only) (not (region-active-p))
                   (= point (point)) (= tick (buffer-chars-modified-tick))
                   (not (equal place infill--prefetch-sent)))
          (eglot--signal-textDocument/didChange) ; edits not yet sent come first
          (jsonrpc-notify server :infill/prefetch (eglot--TextDocumentPositionParams))
          (setq infill--prefetch-sent place))))))

(defun infill--prefetch-after-command ()
  "Arm the infill/prefetch timer after a move or a buffer switch that did not edit."
  (let ((tick (buffer-chars-modified-tick))
        ;; Another infill buffer had the last command, or this one was shown in a window again
        ;; (after a command in a buffer without infill-mode, which this hook does not see).
        (entered (or (not (eq infill--prefetch-buffer (current-buffer)))
                     (not (eql buffer-display-count infill--prefetch-display-count)))))
    (cond
     ((not (eql tick infill--prefetch-tick)) ; the command edited (typing): not a new place
      (infill--prefetch-cancel))
     ((or entered (not (eql (point) infill--prefetch-point)))
      (infill--prefetch-cancel)
      (when infill-prefetch
        (setq infill--prefetch-timer
              (run-with-timer infill-prefetch-delay nil #'infill--prefetch-send
                              (current-buffer) tick (point))))))
    (setq infill--prefetch-buffer (current-buffer)
          infill--prefetch-tick tick
          infill--prefetch-point (point)
          infill--prefetch-display-count buffer-display-count)))

;; The model as the server reports it (`infill.stats'): nil before the first answer, "loading",
;; "ready" or "failed".  The server loads the model in the background and answers with nothing
;; meanwhile, so the mode line says so, and the buffer is asked for again when it is ready.
(defvar infill-model-status nil "The server's model status: nil, \"loading\", \"ready\" or \"failed\".")
(defvar infill-model-error nil "Why the model failed to load, from the server.")
(defvar infill--watching nil "Non-nil while the model status is being polled.")
(defconst infill--model-poll-s 0.3 "Seconds between model status polls while it loads.")

(defun infill--lighter ()
  "The mode line's word: ` infill', ` infill[loading]' or ` infill[error]'."
  (pcase infill-model-status
    ("loading" " infill[loading]")
    ("failed" " infill[error]")
    (_ " infill")))

(defun infill--watch-model (server)
  "Poll SERVER's model status until it is ready or failed."
  (unless infill--watching
    (setq infill--watching t)
    (infill--poll-model server)))

(defun infill--poll-model (server)
  (if (not (jsonrpc-running-p server))
      (setq infill--watching nil)
    (jsonrpc-async-request
     server :workspace/executeCommand (list :command "infill.stats")
     :success-fn
     (lambda (result)
       (let ((status (plist-get (plist-get result :model) :status)))
         (if (member status '("loading" "unloaded"))
             (progn
               (unless (equal infill-model-status "loading")
                 (message "infill: loading the model; suggestions appear when it is ready"))
               (setq infill-model-status "loading")
               (force-mode-line-update t)
               (run-with-timer infill--model-poll-s nil #'infill--poll-model server))
           (let ((was infill-model-status))
             (setq infill--watching nil
                   infill-model-status (or status "ready")
                   infill-model-error (plist-get (plist-get result :model) :error))
             (force-mode-line-update t)
             (when (and (equal was "loading") (equal infill-model-status "ready"))
               (with-current-buffer (window-buffer (selected-window))
                 (when (and infill-mode (eq (infill--server) server))
                   (infill-request 2))))))))
     :error-fn (lambda (_err) (setq infill--watching nil))
     :timeout-fn (lambda () (setq infill--watching nil)))))

;;;###autoload
(define-minor-mode infill-mode
  "Show infill-ls suggestions as ghost text while typing.
\\<infill-active-map>\\[infill-accept] accepts, \\[infill-accept-word] accepts a word, \
\\[infill-next] / \\[infill-previous] cycle, \\[infill-dismiss] dismisses."
  :lighter (:eval (infill--lighter))
  (if infill-mode
      (progn
        (when-let ((server (infill--server))) (infill--watch-model server))
        (setq infill--tick (buffer-chars-modified-tick) infill--position (point)
              infill--prefetch-tick (buffer-chars-modified-tick) infill--prefetch-point (point)
              infill--prefetch-display-count buffer-display-count)
        (add-hook 'post-command-hook #'infill--post-command nil t)
        (add-hook 'post-command-hook #'infill--prefetch-after-command nil t))
    (remove-hook 'post-command-hook #'infill--post-command t)
    (remove-hook 'post-command-hook #'infill--prefetch-after-command t)
    (infill--prefetch-cancel)
    (when infill--timer (cancel-timer infill--timer))
    (infill-dismiss)))

;;;###autoload
(defun infill-mode-maybe ()
  "Turn on `infill-mode' when this buffer's eglot server offers inline completion."
  (when (and (bound-and-true-p eglot--managed-mode)
             (eglot--server-capable :inlineCompletionProvider))
    (infill-mode 1)))

(defun infill-show-stats ()
  "Show request, suggestion and acceptance counts and the last latency."
  (interactive)
  (message "infill: requests %d, shown %d, accepted %d, errors %d, last latency %s"
           (plist-get infill-stats :requests) (plist-get infill-stats :shown)
           (plist-get infill-stats :accepted) (plist-get infill-stats :errors)
           (if-let ((ms (plist-get infill-stats :last-latency-ms))) (format "%d ms" ms) "-")))

(provide 'infill)
;;; infill.el ends here
