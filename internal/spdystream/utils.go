/*
   Copyright 2014-2021 Docker Inc.

   Licensed under the Apache License, Version 2.0 (the "License");
   you may not use this file except in compliance with the License.
   You may obtain a copy of the License at

       http://www.apache.org/licenses/LICENSE-2.0

   Unless required by applicable law or agreed to in writing, software
   distributed under the License is distributed on an "AS IS" BASIS,
   WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
   See the License for the specific language governing permissions and
   limitations under the License.

   Modified by the kpf authors in 2026: debugMessage logs nothing. See
   doc.go.
*/

package spdystream

// debugMessage is where upstream logs its debug lines, when the DEBUG
// environment variable is set. kpf's copy logs nothing: an environment
// variable as common as DEBUG must not turn on logging (of stream ids and
// headers) to standard error inside kpf.
func debugMessage(string, ...any) {}
