package main

import (
	"errors"
	"fmt"
	"io"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	credentialproviderv1 "k8s.io/kubelet/pkg/apis/credentialprovider/v1"
)

// maxRequestBytes bounds what is read from stdin; a kubelet's request is a
// few KiB (the image and a token).
const maxRequestBytes = 1 << 20

// runPlugin is the exec shell around p: it reads one CredentialProviderRequest
// from r, checks its apiVersion and kind, and writes p's answer to w.
func runPlugin(r io.Reader, w io.Writer, p provider) error {
	data, err := io.ReadAll(io.LimitReader(r, maxRequestBytes+1))
	if err != nil {
		return fmt.Errorf("read the request from stdin: %w", err)
	}
	if len(data) > maxRequestBytes {
		return errors.New("the request on stdin is larger than 1 MiB")
	}
	codecs, err := newCodecs()
	if err != nil {
		return err
	}
	req, err := decodeRequest(codecs, data)
	if err != nil {
		return err
	}
	resp, err := p.credentials(req)
	if err != nil {
		return err
	}
	out, err := encodeResponse(codecs, resp)
	if err != nil {
		return err
	}
	if _, err := w.Write(out); err != nil {
		return fmt.Errorf("write the response to stdout: %w", err)
	}
	return nil
}

// newCodecs knows only credentialprovider.kubelet.k8s.io/v1, the version
// the kubelet configuration of this provider names.
func newCodecs() (serializer.CodecFactory, error) {
	scheme := runtime.NewScheme()
	if err := credentialproviderv1.AddToScheme(scheme); err != nil {
		return serializer.CodecFactory{}, fmt.Errorf("scheme: %w", err)
	}
	return serializer.NewCodecFactory(scheme), nil
}

func decodeRequest(codecs serializer.CodecFactory, data []byte) (*credentialproviderv1.CredentialProviderRequest, error) {
	gvk, err := json.DefaultMetaFactory.Interpret(data)
	if err != nil {
		return nil, fmt.Errorf("the request on stdin is not a JSON object: %w", err)
	}
	if gvk.GroupVersion() != credentialproviderv1.SchemeGroupVersion {
		return nil, fmt.Errorf("apiVersion %q is not supported: set apiVersion: %s for this provider in the kubelet's CredentialProviderConfig",
			gvk.GroupVersion().String(), credentialproviderv1.SchemeGroupVersion)
	}
	if gvk.Kind != "CredentialProviderRequest" {
		return nil, fmt.Errorf("kind %q is not a CredentialProviderRequest", gvk.Kind)
	}
	obj, _, err := codecs.UniversalDeserializer().Decode(data, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("decode the CredentialProviderRequest: %w", err)
	}
	req, ok := obj.(*credentialproviderv1.CredentialProviderRequest)
	if !ok {
		return nil, fmt.Errorf("decoded a %T, not a CredentialProviderRequest", obj)
	}
	return req, nil
}

func encodeResponse(codecs serializer.CodecFactory, resp *credentialproviderv1.CredentialProviderResponse) ([]byte, error) {
	info, ok := runtime.SerializerInfoForMediaType(codecs.SupportedMediaTypes(), runtime.ContentTypeJSON)
	if !ok {
		return nil, errors.New("no JSON serializer")
	}
	out, err := runtime.Encode(codecs.EncoderForVersion(info.Serializer, credentialproviderv1.SchemeGroupVersion), resp)
	if err != nil {
		return nil, fmt.Errorf("encode the CredentialProviderResponse: %w", err)
	}
	return out, nil
}
