#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <cblas.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+1e-9*t.tv_nsec;}
int main(int argc,char**argv){ int th=atoi(argv[1]); openblas_set_num_threads(th);
 int N=3072,K=576; float*w=malloc(sizeof(float)*N*K),*x=malloc(4*K),*y=malloc(4*N);
 for(int i=0;i<N*K;i++)w[i]=1e-3f*(i%7); for(int i=0;i<K;i++)x[i]=1;
 for(int r=0;r<3;r++){ double t0=now(); for(int k=0;k<100;k++) cblas_sgemm(CblasRowMajor,CblasNoTrans,CblasTrans,1,N,K,1,x,K,w,K,0,y,N); double t1=now();
 for(int k=0;k<100;k++) cblas_sgemv(CblasRowMajor,CblasNoTrans,N,K,1,w,K,x,1,0,y,1); double t2=now();
 printf("threads %d: sgemm M=1 %.1f us  sgemv %.1f us  (%.1f GB/s gemv)\n",th,(t1-t0)*1e4,(t2-t1)*1e4, 4.0*N*K/((t2-t1)/100)*1e-9);}
}
