/* Fake of Coral's libedgetpu.so.1: the TFLite external-delegate plugin ABI that LiteRT's
 * load_delegate() calls (tflite_plugin_create_delegate / tflite_plugin_destroy_delegate).
 *
 * Like the real library when no Edge TPU is attached, create returns NULL (LiteRT then raises
 * ValueError "Failed to load delegate from ..."). With FAKE_EDGETPU_ATTACHED=1 it returns a
 * delegate whose Prepare claims no nodes (the CPU runs the model), so a copy of a CPU model
 * stands in for the compiled one. FAKE_EDGETPU_TRACE names a file that gets one line per call.
 * Build: cc -shared -fPIC -o libedgetpu.so.1 libedgetpu_fake.c
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The layout of TfLiteDelegate (tensorflow/lite/core/c/common.h). */
typedef struct TfLiteDelegate {
  void* data_;
  int (*Prepare)(void* context, struct TfLiteDelegate* delegate);
  int (*CopyFromBufferHandle)(void* context, struct TfLiteDelegate* delegate, int buffer_handle, void* tensor);
  int (*CopyToBufferHandle)(void* context, struct TfLiteDelegate* delegate, int buffer_handle, void* tensor);
  void (*FreeBufferHandle)(void* context, struct TfLiteDelegate* delegate, int* handle);
  int64_t flags;
  void* opaque_delegate_builder;
} TfLiteDelegate;

static void trace(const char* what, const char* detail) {
  const char* path = getenv("FAKE_EDGETPU_TRACE");
  if (!path) return;
  FILE* f = fopen(path, "a");
  if (!f) return;
  fprintf(f, "%s%s%s\n", what, detail ? " " : "", detail ? detail : "");
  fclose(f);
}

static int prepare(void* context, TfLiteDelegate* delegate) {
  (void)context;
  (void)delegate;
  trace("prepare", NULL);
  return 0; /* kTfLiteOk: no nodes replaced */
}

TfLiteDelegate* tflite_plugin_create_delegate(char** keys, char** values, size_t count,
                                              void (*report_error)(const char*)) {
  char options[256] = "";
  for (size_t i = 0; i < count; i++) {
    strncat(options, keys[i], sizeof(options) - strlen(options) - 1);
    strncat(options, "=", sizeof(options) - strlen(options) - 1);
    strncat(options, values[i], sizeof(options) - strlen(options) - 1);
    strncat(options, " ", sizeof(options) - strlen(options) - 1);
  }
  const char* attached = getenv("FAKE_EDGETPU_ATTACHED");
  if (!attached || strcmp(attached, "1") != 0) {
    trace("create-failed", options);
    (void)report_error; /* the real library reports nothing: the ValueError has no detail */
    return NULL;
  }
  TfLiteDelegate* delegate = calloc(1, sizeof(TfLiteDelegate));
  delegate->Prepare = prepare;
  trace("create", options);
  return delegate;
}

void tflite_plugin_destroy_delegate(TfLiteDelegate* delegate) {
  trace("destroy", NULL);
  free(delegate);
}
