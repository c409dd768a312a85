// Express 4 is installed under an alias to test the middleware against both majors; reuse Express 5's types.
declare module 'express4' {
  import express from 'express';
  export default express;
}
